// A bounded FIFO: the newest `capacity` items (and, optionally, at most `maxWeight` in total weight, e.g.
// bytes). Pushing past a bound drops the oldest. Used for auraed's log ring and the event history.

export class RingBuffer<T> {
  private items: Array<T | undefined>;
  private weights: number[];
  private start = 0;
  private count = 0;
  private weight = 0;

  /**
   * @param capacity at most this many items (>= 1)
   * @param maxWeight at most this total weight, as measured by `weigh`; the newest item is always kept
   */
  constructor(
    readonly capacity: number,
    private readonly maxWeight = Infinity,
    private readonly weigh: (item: T) => number = () => 0,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`RingBuffer capacity must be an integer >= 1 (got ${capacity})`);
    this.items = new Array<T | undefined>(capacity);
    this.weights = new Array<number>(capacity).fill(0);
  }

  get size(): number {
    return this.count;
  }

  push(item: T): void {
    if (this.count === this.capacity) this.dropOldest();
    const w = this.weigh(item);
    const at = (this.start + this.count) % this.capacity;
    this.items[at] = item;
    this.weights[at] = w;
    this.count++;
    this.weight += w;
    while (this.weight > this.maxWeight && this.count > 1) this.dropOldest();
  }

  /** The newest `n` items (all when undefined), oldest first. */
  last(n?: number): T[] {
    const take = n === undefined ? this.count : Math.max(0, Math.min(n, this.count));
    const out: T[] = [];
    for (let i = this.count - take; i < this.count; i++) out.push(this.items[(this.start + i) % this.capacity] as T);
    return out;
  }

  private dropOldest(): void {
    this.weight -= this.weights[this.start]!;
    this.items[this.start] = undefined;
    this.start = (this.start + 1) % this.capacity;
    this.count--;
  }
}
