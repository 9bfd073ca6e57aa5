// The executable lifecycle as a table: state × event → next state. Anything not in the table is a bug in the
// caller (an event that cannot happen in that state) and throws, naming both.
//
//            start            spawned                exit: restart        backoff_elapsed
//   stopped ───────► starting ───────► running ──────────────────► backoff ─────────────► starting …
//   exited  ───────►    │                 │  exit: done_ok → exited, done_failed / start_limit_hit → failed
//   failed  ───────►    │ spawn_failed    │ stop
//                       ▼ → failed        ▼
//                                      stopping ── exit (any) ──► stopped
//
// `stop` in backoff cancels the restart (→ stopped); in stopped/exited/failed it changes nothing.

export const EXECUTABLE_STATES = ['starting', 'running', 'stopping', 'backoff', 'stopped', 'exited', 'failed'] as const;
export type ExecutableState = (typeof EXECUTABLE_STATES)[number];

export const EXECUTABLE_EVENTS = [
  'start',
  'spawned',
  'spawn_failed',
  'exit_restart',
  'exit_done_ok',
  'exit_done_failed',
  'start_limit_hit',
  'backoff_elapsed',
  'stop',
] as const;
export type ExecutableEvent = (typeof EXECUTABLE_EVENTS)[number];

/** States in which the executable has (or is about to have) a process. */
export const ACTIVE_STATES: ReadonlySet<ExecutableState> = new Set(['starting', 'running', 'stopping', 'backoff']);

type Table = Record<ExecutableState, Partial<Record<ExecutableEvent, ExecutableState>>>;

const exits = (ok: ExecutableState, failed: ExecutableState, restart: ExecutableState) => ({
  exit_restart: restart,
  exit_done_ok: ok,
  exit_done_failed: failed,
  start_limit_hit: failed,
});

export const TRANSITIONS: Table = {
  starting: { spawned: 'running', spawn_failed: 'failed', stop: 'stopping', ...exits('exited', 'failed', 'backoff') },
  running: { stop: 'stopping', ...exits('exited', 'failed', 'backoff') },
  // While stopping, however the process ends, the executable is stopped: Stop wins over the restart policy.
  stopping: { stop: 'stopping', spawn_failed: 'stopped', ...exits('stopped', 'stopped', 'stopped') },
  backoff: { backoff_elapsed: 'starting', stop: 'stopped' },
  stopped: { start: 'starting', stop: 'stopped' },
  exited: { start: 'starting', stop: 'exited' },
  failed: { start: 'starting', stop: 'failed' },
};

export class TransitionError extends Error {
  constructor(
    readonly state: ExecutableState,
    readonly event: ExecutableEvent,
  ) {
    super(`executable state machine: event "${event}" is not allowed in state "${state}"`);
    this.name = 'TransitionError';
  }
}

export function nextState(state: ExecutableState, event: ExecutableEvent): ExecutableState {
  const next = TRANSITIONS[state][event];
  if (next === undefined) throw new TransitionError(state, event);
  return next;
}
