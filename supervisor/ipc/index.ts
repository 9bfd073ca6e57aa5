// The contract between auraed, aurae init and whoever watches a node's console, owned here and imported by all:
// - the messages auraed sends to init over the IPC channel init opens (stdio fd 3, 'ipc'), as schemas: auraed
//   builds them with the types, init validates what it receives with the same schemas (auraed is a separate
//   program: a malformed message is reported, not trusted);
// - the readiness line init prints on the console once auraed serves, which the tests, a spawning parent
//   (supervisor/vms) and the benchmarks wait for.
import * as z from 'zod/mini';
// Loads the English messages zod/mini needs (one place for the whole program).
import '../config';

export const ReadyMessageSchema = z.object({
  type: z.literal('ready'),
  node: z.string(),
  version: z.string(),
  /** Unix socket path, or null when that listener is disabled. */
  socket: z.nullable(z.string()),
  /** Bound TCP address host:port, or null when disabled. */
  tcp: z.nullable(z.string()),
});

export const PowerActionSchema = z.enum(['poweroff', 'reboot']);

export const PowerMessageSchema = z.object({
  type: z.literal('power'),
  action: PowerActionSchema,
  /** Identity (client certificate CN) of the caller that asked. */
  by: z.string(),
  /** The caller's reason, when one was given (validated by auraed: printable, at most 256 characters). */
  reason: z.optional(z.string().check(z.maxLength(256))),
});

export const AuraedToInitMessageSchema = z.discriminatedUnion('type', [ReadyMessageSchema, PowerMessageSchema]);

export type ReadyMessage = z.infer<typeof ReadyMessageSchema>;
export type PowerAction = z.infer<typeof PowerActionSchema>;
export type PowerMessage = z.infer<typeof PowerMessageSchema>;
export type AuraedToInitMessage = z.infer<typeof AuraedToInitMessageSchema>;

/** The message, or a string saying what is wrong with it (init's side of the channel). */
export function parseAuraedMessage(value: unknown): AuraedToInitMessage | string {
  const result = AuraedToInitMessageSchema.safeParse(value);
  if (result.success) return result.data;
  return result.error.issues.map((i) => `${i.path.join('.') || '(message)'}: ${i.message}`).join('; ');
}

/** The first word of the readiness line. */
export const READY_LINE_PREFIX = 'AURAE_READY';
/** A readiness line in console text, as a console waiter tests each line (group 1: its JSON). */
export const READY_LINE = /AURAE_READY (\{.*\})/;

/** What the readiness line says: the ready message's fields and auraed's pid. */
export const ReadyLineSchema = z.extend(z.omit(ReadyMessageSchema, { type: true }), { pid: z.number() });
export type ReadyLine = z.infer<typeof ReadyLineSchema>;

/** The one machine-readable console line init prints when auraed is ready (fixed key order). */
export function readyLine(message: ReadyMessage, pid: number): string {
  const { node, version, socket, tcp } = message;
  return `${READY_LINE_PREFIX} ${JSON.stringify({ node, version, socket, tcp, pid })}`;
}

/** The fields of the readiness line in `text` (a console line or more). Throws saying what is wrong. */
export function parseReadyLine(text: string): ReadyLine {
  const json = READY_LINE.exec(text)?.[1];
  if (json === undefined) throw new Error(`no ${READY_LINE_PREFIX} line in: ${text.slice(0, 200)}`);
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new Error(`the ${READY_LINE_PREFIX} line is not valid JSON: ${(err as Error).message}: ${json.slice(0, 200)}`);
  }
  const result = ReadyLineSchema.safeParse(value);
  if (!result.success) throw new Error(`the ${READY_LINE_PREFIX} line is malformed: ${result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return result.data;
}

/** The channel to init; absent when auraed was not started by aurae init. */
export interface InitChannel {
  send(message: AuraedToInitMessage): Promise<void>;
}

/** Minimal view of `process` for the IPC channel (injectable in tests). */
export interface IpcProcess {
  send?: (message: unknown, sendHandle?: undefined, options?: object, callback?: (error: Error | null) => void) => boolean;
  connected?: boolean;
}

/** The IPC channel of `proc` if it has one (auraed under init), else null. */
export function initChannelFromProcess(proc: IpcProcess = process as IpcProcess): InitChannel | null {
  const send = proc.send;
  if (typeof send !== 'function') return null;
  return {
    send: (message) =>
      new Promise((resolve, reject) => {
        if (proc.connected === false) {
          reject(new Error('the IPC channel to aurae init is closed'));
          return;
        }
        send.call(proc, message, undefined, {}, (error) => (error ? reject(error) : resolve()));
      }),
  };
}
