// Server-streaming plumbing shared by the observe methods: a backlog then (optionally) live items, written
// with the stream's backpressure, ended cleanly when the client cancels or auraed shuts down, and cut with
// RESOURCE_EXHAUSTED when a follower stops reading (memory stays bounded either way).
import type { ServerWritableStream } from '@grpc/grpc-js';
import { AuraeError } from '../errors';

/** The follow streams that are open, so shutdown can end them (a graceful server stop waits for open calls). */
export class StreamRegistry {
  private readonly closers = new Set<() => void>();
  private closed = false;

  /** Register `close`; returns the unregister function. After shutdown, `close` runs at once. */
  add(close: () => void): () => void {
    if (this.closed) {
      close();
      return () => {};
    }
    this.closers.add(close);
    return () => void this.closers.delete(close);
  }

  get size(): number {
    return this.closers.size;
  }

  /** End every open stream and every one opened later. */
  shutdown(): void {
    this.closed = true;
    const all = [...this.closers];
    this.closers.clear();
    for (const close of all) close();
  }
}

export interface StreamSource<T> {
  /** Start receiving live items. Called (when following) right before backlog(), in the same tick. */
  subscribe?(listener: (item: T) => void): () => void;
  /**
   * What to send first. Precondition: it takes its snapshot synchronously when called (it may resolve later),
   * so every item is either in the backlog or seen by the listener, never both and never neither.
   */
  backlog(): Promise<Iterable<T>> | Iterable<T>;
}

export interface StreamOptions<T, M> {
  follow: boolean;
  registry: StreamRegistry;
  encode(item: T): M;
  /** Live items waiting for a slow client before the stream is cut; default 10000. */
  maxQueued?: number;
}

/**
 * Send the backlog, then (with follow) live items until the client cancels (resolves) or the registry shuts
 * down (ends with OK, resolves). Rejects with an AuraeError when the client falls too far behind, or with the
 * backlog's error; serverStream() turns that into the call's status.
 */
export function pumpStream<T, M>(call: ServerWritableStream<unknown, M>, source: StreamSource<T>, options: StreamOptions<T, M>): Promise<void> {
  const maxQueued = options.maxQueued ?? 10_000;
  return new Promise<void>((resolve, reject) => {
    let done = false;
    let backlog: Iterator<T> | null = null;
    let backlogLoaded = false;
    let waitingForDrain = false;
    const live: T[] = [];
    let unsubscribe = () => {};
    let unregister = () => {};

    const finish = (outcome: { end: boolean } | { error: unknown }) => {
      if (done) return;
      done = true;
      unsubscribe();
      unregister();
      call.off('cancelled', onCancelled);
      call.off('drain', onDrain);
      if ('error' in outcome) return reject(outcome.error);
      if (outcome.end && !call.cancelled) call.end();
      resolve();
    };
    const onCancelled = () => finish({ end: false });
    const onDrain = () => {
      waitingForDrain = false;
      pump();
    };

    const pump = () => {
      while (!done && !waitingForDrain) {
        let item: T;
        if (backlog) {
          const next = backlog.next();
          if (next.done) {
            backlog = null;
            if (!options.follow) return finish({ end: true });
            continue;
          }
          item = next.value;
        } else if (backlogLoaded && live.length > 0) {
          item = live.shift()!;
        } else {
          return;
        }
        if (!call.write(options.encode(item))) {
          waitingForDrain = true;
          call.once('drain', onDrain);
        }
      }
    };

    call.on('cancelled', onCancelled);
    if (call.cancelled) return finish({ end: false });
    if (options.follow) {
      unregister = options.registry.add(() => finish({ end: true }));
      if (source.subscribe) {
        unsubscribe = source.subscribe((item) => {
          if (done) return;
          if (live.length >= maxQueued) {
            return finish({
              error: new AuraeError('RESOURCE_EXHAUSTED', `the client is not reading: more than ${maxQueued} messages were waiting, so the stream was ended; reconnect (with a tail) to continue`),
            });
          }
          live.push(item);
          pump();
        });
      }
    }
    let snapshot: Promise<Iterable<T>>;
    try {
      snapshot = Promise.resolve(source.backlog());
    } catch (err) {
      snapshot = Promise.reject(err);
    }
    snapshot.then(
        (items) => {
          if (done) return;
          backlog = items[Symbol.iterator]();
          backlogLoaded = true;
          pump();
        },
        (err: unknown) => finish({ error: err }),
      );
  });
}
