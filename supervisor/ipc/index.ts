// The contract between auraed, aurae init and whoever watches a node's console, owned here and imported by all:
// - the messages auraed sends to init over the IPC channel init opens (stdio fd 3, 'ipc'), as schemas: auraed
//   builds them with the types, init validates what it receives with the same schemas (auraed is a separate
//   program: a malformed message is reported, not trusted);
// - the one message init sends the other way: its part of the boot report (its phases), sent to every auraed it
//   starts, so a restarted auraed still reports the whole boot;
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
  /** When auraed marked everything SERVING, ms since the kernel started (supervisor/phases bootClockMs). */
  servingMs: z.optional(z.number()),
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

/** Milliseconds on the boot clock (since the kernel started), or a duration: finite and not negative. */
const Millis = z.number().check(z.minimum(0));

/** One phase of a boot sequence, as the boot report carries it (supervisor/phases' PhaseResult without the error). */
export const BootPhaseSchema = z.object({
  name: z.string().check(z.maxLength(64)),
  outcome: z.enum(['ok', 'skipped', 'failed']),
  /** When it started, ms since the kernel started. */
  startMs: Millis,
  /** How long it ran, ms (0 when skipped). */
  ms: Millis,
});

/** init's part of the boot report. */
export const InitBootSchema = z.object({
  /** When init (Node as /init) started, ms since the kernel started: the kernel's time to /init. */
  startedMs: Millis,
  /** init's boot phases, in order (at most one per BOOT_PHASES entry). */
  phases: z.array(BootPhaseSchema).check(z.maxLength(64)),
  /** How many times init has started auraed this boot (1 + restarts), counting the one it is sent to. */
  auraedStarts: z.number().check(z.int(), z.minimum(1)),
  /** When the first auraed of this boot was SERVING (ms since the kernel started); null before that. */
  firstServingMs: z.nullable(Millis),
});

/** init → auraed, after its boot phases and again to every auraed it starts later. */
export const BootMessageSchema = z.object({ type: z.literal('boot'), init: InitBootSchema });

export const InitToAuraedMessageSchema = z.discriminatedUnion('type', [BootMessageSchema]);

export type ReadyMessage = z.infer<typeof ReadyMessageSchema>;
export type PowerAction = z.infer<typeof PowerActionSchema>;
export type PowerMessage = z.infer<typeof PowerMessageSchema>;
export type AuraedToInitMessage = z.infer<typeof AuraedToInitMessageSchema>;
export type BootPhase = z.infer<typeof BootPhaseSchema>;
export type InitBoot = z.infer<typeof InitBootSchema>;
export type BootMessage = z.infer<typeof BootMessageSchema>;
export type InitToAuraedMessage = z.infer<typeof InitToAuraedMessageSchema>;

/** The message, or a string saying what is wrong with it (init's side of the channel). */
export function parseAuraedMessage(value: unknown): AuraedToInitMessage | string {
  const result = AuraedToInitMessageSchema.safeParse(value);
  if (result.success) return result.data;
  return describeIssues(result.error.issues);
}

/** The message, or a string saying what is wrong with it (auraed's side of the channel). */
export function parseInitMessage(value: unknown): InitToAuraedMessage | string {
  const result = InitToAuraedMessageSchema.safeParse(value);
  if (result.success) return result.data;
  return describeIssues(result.error.issues);
}

function describeIssues(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return issues.map((i) => `${i.path.map(String).join('.') || '(message)'}: ${i.message}`).join('; ');
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
  /**
   * Hear init's messages: the latest boot message at once if one came before, then each valid one as it comes;
   * a malformed one goes to `onMalformed` (what is wrong with it). Absent on channels that never receive.
   */
  onMessage?(listener: (message: InitToAuraedMessage) => void, onMalformed?: (why: string) => void): void;
}

/** Minimal view of `process` for the IPC channel (injectable in tests). */
export interface IpcProcess {
  send?: (message: unknown, sendHandle?: undefined, options?: object, callback?: (error: Error | null) => void) => boolean;
  connected?: boolean;
  on?: (event: 'message', listener: (message: unknown) => void) => unknown;
}

/**
 * The IPC channel of `proc` if it has one (auraed under init), else null. It listens at once (call it before the
 * first turn of the event loop): init's boot message may already be waiting, and is kept for a later listener.
 */
export function initChannelFromProcess(proc: IpcProcess = process as IpcProcess): InitChannel | null {
  const send = proc.send;
  if (typeof send !== 'function') return null;
  let latestBoot: BootMessage | null = null;
  const listeners: { listener: (message: InitToAuraedMessage) => void; onMalformed?: (why: string) => void }[] = [];
  const malformed: string[] = [];
  proc.on?.('message', (raw) => {
    const message = parseInitMessage(raw);
    if (typeof message === 'string') {
      const why = `${message}: ${JSON.stringify(raw)?.slice(0, 200)}`;
      // Kept (a few) for the first listener, which may subscribe a little later.
      if (listeners.length === 0 && malformed.length < 8) malformed.push(why);
      for (const l of listeners) l.onMalformed?.(why);
      return;
    }
    latestBoot = message;
    for (const l of listeners) l.listener(message);
  });
  return {
    onMessage(listener, onMalformed) {
      listeners.push({ listener, onMalformed });
      for (const why of malformed.splice(0)) onMalformed?.(why);
      if (latestBoot) listener(latestBoot);
    },
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
