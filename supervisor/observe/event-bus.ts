// The in-process lifecycle event bus: publishers (cells, executables) stamp and hand over events; the
// history is a bounded ring for late readers (GetEvents since_seq); subscribers are called synchronously in
// publish order and can never throw into a publisher.
import { RingBuffer } from '../log';
import type { Logger } from '../log';
import type { AuraeEvent, EventBus, StampedEvent } from './types';

export interface EventBusOptions {
  /** Events kept for recent(); default 1000 (config observe.eventHistory). */
  capacity?: number;
  clock?: () => Date;
  /** Where a failing subscriber is reported. */
  log?: Logger;
}

export function createEventBus(options: EventBusOptions = {}): EventBus {
  const clock = options.clock ?? (() => new Date());
  const history = new RingBuffer<StampedEvent>(options.capacity ?? 1000);
  const listeners = new Set<(event: StampedEvent) => void>();
  let seq = 0;
  // A subscriber that publishes (e.g. a restart reacting to an exit) must not overtake the event it was
  // handling for the subscribers after it: deliveries are queued and drained in seq order.
  const queue: StampedEvent[] = [];
  let draining = false;

  const deliver = () => {
    if (draining) return;
    draining = true;
    try {
      for (let event = queue.shift(); event; event = queue.shift()) {
        for (const listener of [...listeners]) {
          try {
            listener(event);
          } catch (err) {
            options.log?.error('event subscriber failed; the event was still delivered to the others', { seq: event.seq, kind: event.kind, err });
          }
        }
      }
    } finally {
      draining = false;
    }
  };

  return {
    publish(event: AuraeEvent): StampedEvent {
      const stamped = { ...event, seq: ++seq, time: clock().toISOString() } as StampedEvent;
      history.push(stamped);
      queue.push(stamped);
      deliver();
      return stamped;
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    recent: () => history.last(),
  };
}
