// The Kubernetes streaming protocols as pure data and functions (no sockets): protocol names and negotiation,
// the metav1.Status the v4 error stream carries, resize messages, port headers, the WebSocket channel framing, and
// the validation of CRI Exec/Attach/PortForward requests.
//
// Facts (k8s.io/apimachinery remotecommand, portforward and wsstream): SPDY streams are told apart by their
// "streamType" header (error, stdin, stdout, stderr, resize; port-forward: data, error, with "port" and
// "requestID"); the WebSocket channel protocols prefix every message with its channel number (0 stdin, 1 stdout,
// 2 stderr, 3 error, 4 resize; v5 adds 255 "close": [255, channel] half-closes that channel), the base64 variants
// use text messages whose first character is the channel digit; a WebSocket port-forward has a data (2i) and an
// error (2i+1) channel per requested port, and the server's first message on each is the port, little-endian u16.
import type { AttachRequest, ExecRequest, PortForwardRequest } from '../../gen/runtime/v1/api';
import { invalid } from '../../validation';

/** Remote command subprotocols, most preferred first (SPDY: X-Stream-Protocol-Version). */
export const REMOTECOMMAND_V5 = 'v5.channel.k8s.io';
export const REMOTECOMMAND_V4 = 'v4.channel.k8s.io';
export const REMOTECOMMAND_V3 = 'v3.channel.k8s.io';
export const REMOTECOMMAND_V2 = 'v2.channel.k8s.io';
export const REMOTECOMMAND_V1 = 'channel.k8s.io';
export const SPDY_EXEC_PROTOCOLS = [REMOTECOMMAND_V5, REMOTECOMMAND_V4, REMOTECOMMAND_V3, REMOTECOMMAND_V2, REMOTECOMMAND_V1] as const;
export const PORTFORWARD_PROTOCOL = 'portforward.k8s.io';

/** WebSocket subprotocols (Sec-WebSocket-Protocol). */
export const WS_BASE64_V1 = 'base64.channel.k8s.io';
export const WS_BASE64_V4 = 'v4.base64.channel.k8s.io';
export const WS_EXEC_PROTOCOLS = [REMOTECOMMAND_V5, REMOTECOMMAND_V4, WS_BASE64_V4, REMOTECOMMAND_V1, WS_BASE64_V1] as const;
export const WS_PORTFORWARD_PROTOCOLS = [REMOTECOMMAND_V4, WS_BASE64_V4, PORTFORWARD_PROTOCOL] as const;

export const SPDY_UPGRADE = 'SPDY/3.1';
export const HEADER_PROTOCOL_VERSION = 'x-stream-protocol-version';
export const HEADER_ACCEPTED_PROTOCOL_VERSIONS = 'x-accepted-stream-protocol-versions';
/** SPDY stream header names (lowercase on the wire). */
export const HEADER_STREAM_TYPE = 'streamtype';
export const HEADER_PORT = 'port';
export const HEADER_REQUEST_ID = 'requestid';

export type ExecStreamType = 'error' | 'stdin' | 'stdout' | 'stderr' | 'resize';
export const EXEC_STREAM_TYPES: readonly ExecStreamType[] = ['error', 'stdin', 'stdout', 'stderr', 'resize'];

export const WS_CHANNEL = { stdin: 0, stdout: 1, stderr: 2, error: 3, resize: 4, close: 255 } as const;

/** What a negotiated remote-command protocol implies. */
export interface CommandProtocol {
  name: string;
  /** The error stream carries a JSON metav1.Status (v4+), else the error's text (nothing on success). */
  jsonStatus: boolean;
  /** A resize stream/channel exists (v3+; WebSocket: always). */
  resize: boolean;
  /** WebSocket: text messages with a channel digit and base64 payload. */
  base64: boolean;
  /** WebSocket v5: the client may half-close a channel with [255, channel]. */
  closeChannel: boolean;
}

export function spdyCommandProtocol(name: string): CommandProtocol {
  const v = name === REMOTECOMMAND_V5 || name === REMOTECOMMAND_V4 ? 4 : name === REMOTECOMMAND_V3 ? 3 : name === REMOTECOMMAND_V2 ? 2 : 1;
  return { name, jsonStatus: v >= 4, resize: v >= 3, base64: false, closeChannel: false };
}

export function wsCommandProtocol(name: string): CommandProtocol {
  return {
    name,
    jsonStatus: name === REMOTECOMMAND_V5 || name === REMOTECOMMAND_V4 || name === WS_BASE64_V4,
    resize: true,
    base64: name === WS_BASE64_V4 || name === WS_BASE64_V1,
    closeChannel: name === REMOTECOMMAND_V5,
  };
}

/** The values of a repeatable, comma-separable header (Node joins repeated unknown headers with ", "). */
export function headerList(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const all = Array.isArray(value) ? value : [value];
  return all.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
}

/** The first of the client's protocols (its order) that the server supports, or null. */
export function negotiateProtocol(client: readonly string[], server: readonly string[]): string | null {
  for (const p of client) if (server.includes(p)) return p;
  return null;
}

/** metav1.Status as the v4 error stream carries it. */
export interface K8sStatus {
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: { causes: { reason?: string; message: string }[] };
  code?: number;
}

export function successStatus(): K8sStatus {
  return { metadata: {}, status: 'Success' };
}

/** A process that exited non-zero: the client turns the ExitCode cause into its exit code. */
export function exitCodeStatus(code: number): K8sStatus {
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: exit status ${code}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
  };
}

/** Anything else that went wrong (the command could not run, the container is gone, …). */
export function internalErrorStatus(message: string): K8sStatus {
  const why = `error executing command in container: ${message}`;
  return { metadata: {}, status: 'Failure', message: `Internal error occurred: ${why}`, reason: 'InternalError', details: { causes: [{ message: why }] }, code: 500 };
}

/** What goes on the error stream for this status: JSON (v4+), or the message text on failure only (v1–v3). */
export function errorStreamBytes(status: K8sStatus, protocol: Pick<CommandProtocol, 'jsonStatus'>): Buffer | null {
  if (protocol.jsonStatus) return Buffer.from(JSON.stringify(status));
  if (status.status === 'Success') return null;
  return Buffer.from(status.message ?? 'command failed');
}

/** Read an error stream's content back (clients, tests): the exit code, or the failure message. */
export function readErrorStream(bytes: Buffer, protocol: Pick<CommandProtocol, 'jsonStatus'>): { exitCode: number } | { error: string } {
  if (!protocol.jsonStatus) return bytes.length === 0 ? { exitCode: 0 } : { error: bytes.toString('utf8') };
  if (bytes.length === 0) return { error: 'the error stream ended without a status' };
  let status: K8sStatus;
  try {
    status = JSON.parse(bytes.toString('utf8')) as K8sStatus;
  } catch {
    return { error: `the error stream carried no JSON status: ${bytes.toString('utf8').slice(0, 200)}` };
  }
  if (status.status === 'Success') return { exitCode: 0 };
  const cause = status.reason === 'NonZeroExitCode' ? status.details?.causes?.find((c) => c.reason === 'ExitCode') : undefined;
  const code = cause ? Number(cause.message) : NaN;
  if (Number.isInteger(code)) return { exitCode: code };
  return { error: status.message ?? 'command failed' };
}

export interface TerminalSize {
  width: number;
  height: number;
}

/**
 * Splits the resize stream (a sequence of JSON objects {"Width":…,"Height":…}, usually newline-separated) into
 * sizes. Bounded: an object longer than maxBytes is dropped with everything up to its end.
 */
export class ResizeParser {
  private buf = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private overflow = false;

  constructor(private readonly maxBytes = 4096) {}

  push(text: string): TerminalSize[] {
    const sizes: TerminalSize[] = [];
    for (const ch of text) {
      if (this.depth === 0 && ch !== '{') continue; // separators and junk between objects
      if (!this.overflow) this.buf += ch;
      if (this.buf.length > this.maxBytes) {
        this.overflow = true;
        this.buf = '';
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (ch === '\\') this.escaped = true;
        else if (ch === '"') this.inString = false;
        continue;
      }
      if (ch === '"') this.inString = true;
      else if (ch === '{') this.depth++;
      else if (ch === '}' && --this.depth === 0) {
        if (!this.overflow) {
          const size = parseTerminalSize(this.buf);
          if (size) sizes.push(size);
        }
        this.buf = '';
        this.overflow = false;
      }
    }
    return sizes;
  }
}

export function parseTerminalSize(json: string): TerminalSize | null {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const { Width, Height } = v as { Width?: unknown; Height?: unknown };
  const ok = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffff;
  return ok(Width) && ok(Height) ? { width: Width, height: Height } : null;
}

export function encodeTerminalSize(size: TerminalSize): string {
  return `${JSON.stringify({ Width: size.width, Height: size.height })}\n`;
}

/** A port from a "port" header or query value: 1..65535, else an error message. */
export function parsePort(value: string | undefined): number | string {
  if (value === undefined || value === '') return '"port" is required';
  if (!/^[0-9]{1,5}$/.test(value)) return `"port" ${JSON.stringify(value.slice(0, 20))} is not a port: 1-65535`;
  const port = Number(value);
  return port >= 1 && port <= 65535 ? port : `"port" ${value} is not a port: 1-65535`;
}

/** One WebSocket channel message (binary: [channel, ...data]; base64: "<digit><base64>"). */
export function encodeChannelMessage(channel: number, data: Buffer, base64: boolean): Buffer | string {
  if (base64) return String.fromCharCode(48 + channel) + data.toString('base64');
  return Buffer.concat([Buffer.of(channel), data]);
}

export function decodeChannelMessage(message: Buffer | string, base64: boolean): { channel: number; data: Buffer } | null {
  if (base64 || typeof message === 'string') {
    const text = typeof message === 'string' ? message : message.toString('latin1');
    if (text.length === 0) return null;
    const channel = text.charCodeAt(0) - 48;
    if (channel < 0 || channel > 9) return null;
    return { channel, data: Buffer.from(text.slice(1), 'base64') };
  }
  if (message.length === 0) return null;
  return { channel: message[0]!, data: message.subarray(1) };
}

export function portPrefix(port: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(port);
  return b;
}

// ---- CRI request validation (the streaming server caches only valid requests) ----

export function validateExecRequest(req: ExecRequest): ExecRequest {
  if (!req.containerId) throw invalid('container_id', 'required: the container to exec into');
  if (!req.cmd || req.cmd.length === 0) throw invalid('cmd', 'required: the command and its arguments');
  checkStdio(req);
  return { ...req, cmd: [...req.cmd] };
}

export function validateAttachRequest(req: AttachRequest): AttachRequest {
  if (!req.containerId) throw invalid('container_id', 'required: the container to attach to');
  checkStdio(req);
  return { ...req };
}

export function validatePortForwardRequest(req: PortForwardRequest): PortForwardRequest {
  if (!req.podSandboxId) throw invalid('pod_sandbox_id', 'required: the sandbox whose ports are forwarded');
  for (const [i, p] of (req.port ?? []).entries()) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw invalid(`port[${i}]`, `${p} is not a port: 1-65535`);
  }
  return { ...req, port: [...(req.port ?? [])] };
}

function checkStdio(req: { stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean }): void {
  if (!req.stdin && !req.stdout && !req.stderr) throw invalid('stdin', 'one of stdin, stdout or stderr must be set');
  if (req.tty && req.stderr) throw invalid('stderr', 'must be false with tty: a terminal merges stderr into stdout');
}
