// Top-level sequences as tables of named phases, run and logged by one runner (see phases.ts).
export { bootClockMs, findPhaseLine, formatMs, need, PhaseError, phaseLine, phaseSummary, processStartMs, runPhases } from './phases';
export type { LoggedPhase, Phase, PhaseLog, PhaseOutcome, PhaseResult, PhaseRunOptions } from './phases';
