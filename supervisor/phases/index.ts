// Top-level sequences as tables of named phases, run and logged by one runner (see phases.ts).
export { findPhaseLine, need, PhaseError, phaseLine, runPhases } from './phases';
export type { Phase, PhaseLog, PhaseOutcome, PhaseResult, PhaseRunOptions } from './phases';
