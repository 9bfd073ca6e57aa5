// Relaying a streaming call to another node: the caller's requests go to the upstream call and its responses come
// back, with back-pressure both ways (a side that cannot keep up pauses the other, nothing is buffered without
// bound), the caller's half-close passed on, the caller's cancel cancelling the upstream call. The upstream's
// status is reported only after every response before it reached the caller. The router (route.ts) relays every
// streaming method this way; pods relay exec into a VM-sandboxed pod (pods/vm-agent.ts) the same way.
import { type Metadata, type StatusObject, status as grpcStatus } from '@grpc/grpc-js';

// grpc-js's streams take listeners of any arguments (Node's EventEmitter signature).
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Listener = (...args: any[]) => void;

interface Events {
  on(event: string, listener: Listener): unknown;
  once(event: string, listener: Listener): unknown;
  off(event: string, listener: Listener): unknown;
}

/** The caller's side: a grpc-js server stream (writable responses; readable requests when it streams them). */
export interface RelayDownstream extends Events {
  readonly cancelled: boolean;
  /** Needed when the call streams responses. */
  write?(message: unknown): boolean;
  /** Needed when the call streams requests. */
  pause?(): unknown;
  resume?(): unknown;
}

/** The upstream side: a grpc-js client stream (readable responses; writable requests when it streams them). */
export interface RelayUpstream extends Events {
  cancel(): void;
  /** Needed when the call streams responses. */
  pause?(): unknown;
  resume?(): unknown;
  /** Needed when the call streams requests. */
  write?(message: unknown): boolean;
  end?(): unknown;
}

/** The upstream's final status when it is not OK (as grpc-js's client reports it). */
export interface UpstreamError {
  code: number;
  details: string;
  metadata: Metadata;
}

/** How a relayed call ended: the upstream said OK, or failed with a status, or the caller cancelled first. */
export type RelayOutcome = { kind: 'ok' } | { kind: 'error'; error: UpstreamError } | { kind: 'cancelled' };

/**
 * Pipe the caller's requests (when `requests`: the caller's stream must be paused; it is resumed here) into the
 * upstream call, ending it when the caller half-closes, and the upstream's responses (when `responses`) back to
 * the caller. Resolves once the upstream has its status and every response was written to `call` (the caller of
 * relayStream then ends the call or reports the error), or as soon as the caller cancelled (the upstream call is
 * cancelled). Never rejects. Requests that arrive after the upstream's status are dropped.
 */
export function relayStream(call: RelayDownstream, upstream: RelayUpstream, options: { requests: boolean; responses: boolean }): Promise<RelayOutcome> {
  return new Promise<RelayOutcome>((resolve) => {
    let final: StatusObject | null = null;
    let responsesEnded = !options.responses;
    let done = false;
    let requestsPaused = false;

    const finish = (outcome: RelayOutcome) => {
      if (done) return;
      done = true;
      call.off('data', onRequest);
      call.off('end', onRequestsEnd);
      call.off('cancelled', onCancelled);
      call.off('drain', onCallDrain);
      upstream.off('drain', onUpstreamDrain);
      upstream.off('data', onResponse);
      upstream.off('end', onResponsesEnd);
      upstream.off('status', onStatus);
      // 'error' stays handled: grpc-js may still emit it, and an unhandled 'error' event throws.
      resolve(outcome);
    };
    const settle = () => {
      if (!final || !responsesEnded) return;
      if (final.code === grpcStatus.OK) return finish({ kind: 'ok' });
      finish({ kind: 'error', error: { code: final.code, details: final.details, metadata: final.metadata } });
    };

    // Upstream → caller, the upstream paused while the caller's buffer is full.
    function onCallDrain(): void {
      upstream.resume!();
    }
    function onResponse(message: unknown): void {
      if (done || call.cancelled) return;
      if (!call.write!(message)) {
        upstream.pause!();
        call.once('drain', onCallDrain);
      }
    }
    function onResponsesEnd(): void {
      responsesEnded = true;
      settle();
    }
    function onStatus(status: StatusObject): void {
      final = status;
      settle();
    }

    // Caller → upstream, the caller's stream paused while the upstream's buffer is full.
    function onUpstreamDrain(): void {
      requestsPaused = false;
      if (!done) call.resume!();
    }
    function onRequest(message: unknown): void {
      if (done || final) return;
      if (!upstream.write!(message) && !requestsPaused) {
        requestsPaused = true;
        call.pause!();
        upstream.once('drain', onUpstreamDrain);
      }
    }
    function onRequestsEnd(): void {
      if (!done && !final) upstream.end!();
    }
    function onCancelled(): void {
      upstream.cancel();
      finish({ kind: 'cancelled' });
    }

    upstream.on('error', () => {}); // the outcome comes from 'status', after the last response
    if (options.responses) {
      upstream.on('data', onResponse);
      upstream.on('end', onResponsesEnd);
    }
    upstream.on('status', onStatus);
    call.on('cancelled', onCancelled);
    if (call.cancelled) return onCancelled();
    if (options.requests) {
      call.on('data', onRequest);
      call.on('end', onRequestsEnd);
      call.resume!();
    }
  });
}
