// Serving status per service name ("" is the whole server), with change notification for Watch.
// The registry is the core; health-service.ts only turns it into grpc.health.v1 calls.

export type ServingStatus = 'SERVING' | 'NOT_SERVING';

export interface HealthWatcher {
  /** Called with the new status whenever it changes (not on repeats). */
  onStatus(status: ServingStatus): void;
  /** Called once when the registry shuts down: the Watch stream should end so the server can stop. */
  onClose(): void;
}

export class HealthRegistry {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Map<string, Set<HealthWatcher>>();
  private closed = false;

  /** Set (and announce) the status of `service`; "" is the overall status. Ignored after shutdown(). */
  set(service: string, status: ServingStatus): void {
    if (this.closed) return;
    const previous = this.statuses.get(service);
    this.statuses.set(service, status);
    if (previous === status) return;
    for (const watcher of this.watchers.get(service) ?? []) watcher.onStatus(status);
  }

  /** The status of `service`, or undefined when it was never registered. */
  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** All known services and their statuses, sorted by name. */
  list(): Array<[string, ServingStatus]> {
    return [...this.statuses.entries()].sort(([a], [b]) => a.localeCompare(b));
  }

  /** Subscribe to changes of `service` (which may be unknown yet); returns the unsubscribe function. */
  watch(service: string, watcher: HealthWatcher): () => void {
    if (this.closed) {
      watcher.onClose();
      return () => {};
    }
    let set = this.watchers.get(service);
    if (!set) {
      set = new Set();
      this.watchers.set(service, set);
    }
    set.add(watcher);
    return () => {
      set.delete(watcher);
      if (set.size === 0 && this.watchers.get(service) === set) this.watchers.delete(service);
    };
  }

  /** Number of active watchers (for tests and diagnostics). */
  watcherCount(): number {
    let n = 0;
    for (const set of this.watchers.values()) n += set.size;
    return n;
  }

  /**
   * Going down: every service becomes NOT_SERVING (as grpc-go's health server does on shutdown), watchers see
   * that, then their streams are closed so a graceful server shutdown does not wait for them.
   */
  shutdown(): void {
    if (this.closed) return;
    for (const service of this.statuses.keys()) this.set(service, 'NOT_SERVING');
    this.closed = true;
    const all = [...this.watchers.values()].flatMap((set) => [...set]);
    this.watchers.clear();
    for (const watcher of all) watcher.onClose();
  }
}
