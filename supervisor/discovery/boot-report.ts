// The boot report Discover serves (DiscoverResponse.boot): where this boot's time went, timed by the node itself.
// auraed records its own start phases as they run (runPhases' onResult) and keeps init's part, which init sends
// over the IPC channel (supervisor/ipc BootMessage) to every auraed it starts: a restarted auraed reports the
// whole boot too. Pure: times come in, the proto message goes out.
import type { BootPhase, BootReport } from '../gen/aurae/discovery/v0/discovery';
import type { BootPhase as IpcBootPhase, InitBoot } from '../ipc';

/** A phase as runPhases reports it (supervisor/phases PhaseResult). */
export type RecordedPhase = Pick<IpcBootPhase, 'name' | 'outcome' | 'startMs' | 'ms'>;

export interface BootRecorder {
  /** One of this auraed's start phases, as soon as it ended (pass to runPhases' onResult). */
  phase(result: RecordedPhase): void;
  /** init's part, from its boot message (the latest replaces an earlier one). */
  init(part: InitBoot): void;
  /** The report as far as the boot has come. */
  report(): BootReport;
}

/** The auraed phase whose end means the listeners are up, and the one whose end means SERVING (START_PHASES). */
export const LISTENING_PHASE = 'server';
export const SERVING_PHASE = 'serving';

/** `auraedStartedMs`: when this auraed process started (supervisor/phases processStartMs). */
export function createBootRecorder(auraedStartedMs: number): BootRecorder {
  const phases: RecordedPhase[] = [];
  let initPart: InitBoot | null = null;
  const endOf = (name: string) => {
    const p = phases.find((r) => r.name === name && r.outcome === 'ok');
    return p ? p.startMs + p.ms : 0;
  };
  return {
    phase: (result) => void phases.push({ name: result.name, outcome: result.outcome, startMs: result.startMs, ms: result.ms }),
    init: (part) => void (initPart = part),
    report: () => {
      const servingMs = endOf(SERVING_PHASE);
      return {
        fromInit: initPart !== null,
        kernelToInitMs: initPart?.startedMs ?? 0,
        initPhases: (initPart?.phases ?? []).map(toProto),
        auraedStartedMs: round(auraedStartedMs),
        auraedPhases: phases.map(toProto),
        listeningMs: endOf(LISTENING_PHASE),
        servingMs,
        // init learns the first SERVING from the first auraed's ready message; until then (this is the first), ours.
        firstServingMs: initPart?.firstServingMs ?? servingMs,
        auraedStarts: initPart?.auraedStarts ?? 0,
      };
    },
  };
}

function toProto(p: RecordedPhase): BootPhase {
  return { name: p.name, outcome: p.outcome, startMs: p.startMs, durationMs: p.ms };
}

function round(ms: number): number {
  return Math.round(ms);
}
