// PortForward: a TCP connection to a port of a running pod, from the pod's own network (PodService/PortForward;
// what the CRI's PortForward needs of a VM sandbox, whose network is inside its child: the parent asks the child).
// Bytes go both ways with back-pressure (a side that cannot keep up pauses the other); the caller's end of the
// request stream half-closes the connection; the connection's close ends the call; cancel destroys it.
import net from 'node:net';
import { Duplex } from 'node:stream';
import type { ClientDuplexStream, ServerDuplexStream, ServiceError } from '@grpc/grpc-js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { AuraeError } from '../errors';
import type { PodServicePortForwardRequest, PodServicePortForwardResponse } from '../gen/aurae/pods/v0/pods';
import { checkLabel, invalid } from '../validation';

export const PORT_FORWARD_LIMITS = {
  /** Largest data chunk in one request. */
  requestBytes: 1024 * 1024,
  /** Largest data chunk in one response. */
  responseBytes: 64 * 1024,
} as const;

export interface PortForwardInput {
  pod: string;
  port: number;
}

/** The first request, validated (INVALID_ARGUMENT naming the field). */
export function validatePortForwardStart(request: PodServicePortForwardRequest): PortForwardInput {
  const pod = checkLabel('pod_name', request.podName);
  if (!Number.isInteger(request.port) || request.port < 1 || request.port > 65_535) throw invalid('port', `${request.port} is not a TCP port: 1..65535`);
  return { pod, port: request.port };
}

export type PortForwardCall = Pick<ServerDuplexStream<PodServicePortForwardRequest, PodServicePortForwardResponse>, 'cancelled' | 'write' | 'end' | 'pause' | 'resume' | 'on' | 'once' | 'off'>;

const EMPTY = Buffer.alloc(0);

/**
 * Serve one PortForward call (its first request `first`, validated) over `socket` (a connection being made to the
 * pod's port). Resolves when the connection closed and the call was ended, or the caller cancelled; rejects
 * (UNAVAILABLE) when the connection could not be made, (INVALID_ARGUMENT) for a bad later request.
 */
export function pumpPortForward(socket: Duplex, what: string, first: PodServicePortForwardRequest, call: PortForwardCall): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let connected = !(socket instanceof net.Socket) || !socket.connecting;
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      call.off('data', onRequest);
      call.off('end', onEnd);
      call.off('cancelled', onCancelled);
      socket.destroy();
      if (err) return reject(err);
      if (!call.cancelled) call.end();
      resolve();
    };
    function onRequest(request: PodServicePortForwardRequest): void {
      if (settled) return;
      if (request !== first && (request.podName !== '' || request.port !== 0)) return finish(invalid('pod_name', 'set in the first request only: later requests carry data'));
      if (request.data.length > PORT_FORWARD_LIMITS.requestBytes) return finish(invalid('data', `at most ${PORT_FORWARD_LIMITS.requestBytes} bytes per request (got ${request.data.length})`));
      if (request.data.length > 0 && !socket.write(request.data)) {
        call.pause();
        socket.once('drain', () => call.resume());
      }
    }
    function onEnd(): void {
      if (!settled) socket.end();
    }
    function onCancelled(): void {
      finish();
    }
    socket.on('connect', () => void (connected = true));
    socket.on('data', (chunk: Buffer) => {
      if (settled || call.cancelled) return;
      connected = true;
      let full = false;
      for (let at = 0; at < chunk.length; at += PORT_FORWARD_LIMITS.responseBytes) {
        if (!call.write({ data: chunk.subarray(at, at + PORT_FORWARD_LIMITS.responseBytes) })) full = true;
      }
      if (full) {
        socket.pause();
        call.once('drain', () => socket.resume());
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) finish(new AuraeError('UNAVAILABLE', `${what}: connecting failed (${err.code ?? err.message}): is something listening on that port in the pod?`));
      else finish();
    });
    socket.on('close', () => finish());
    call.on('cancelled', onCancelled);
    onRequest(first);
    call.on('data', onRequest);
    call.on('end', onEnd);
    call.resume();
  });
}

/**
 * The client side over a bidi PortForward call (the parent asking its child): a Duplex whose writes are sent as
 * requests and whose reads are the responses' bytes, with back-pressure. The first request (pod and port) is
 * written at once. The call's error (not a cancel) destroys the Duplex with `wrap(err)`.
 */
export function portForwardDuplex(call: ClientDuplexStream<PodServicePortForwardRequest, PodServicePortForwardResponse>, input: PortForwardInput, wrap: (err: ServiceError) => Error): Duplex {
  call.write({ podName: input.pod, port: input.port, data: EMPTY });
  const duplex = new Duplex({
    write(chunk: Buffer, _enc, cb) {
      if (call.write({ podName: '', port: 0, data: chunk })) cb();
      else call.once('drain', () => cb());
    },
    final(cb) {
      call.end();
      cb();
    },
    read() {
      call.resume();
    },
    destroy(err, cb) {
      call.cancel();
      cb(err);
    },
  });
  call.on('data', (m: PodServicePortForwardResponse) => {
    if (m.data.length > 0 && !duplex.push(m.data)) call.pause();
  });
  call.on('end', () => duplex.push(null));
  call.on('error', (err: ServiceError) => {
    if (err.code !== grpcStatus.CANCELLED) duplex.destroy(wrap(err));
  });
  return duplex;
}
