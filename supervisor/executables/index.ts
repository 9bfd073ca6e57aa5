// Executables: what runs in a cell (spec and validation), how it is launched (aurae-exec), restarted (policy,
// state table) and stopped (runner). The cells subsystem owns the cgroups and hands each runner its leaf.
export {
  DEFAULT_PATH,
  effectiveArgv,
  effectiveEnv,
  executableToProto,
  type ExecutableSpec,
  LIMITS as EXECUTABLE_LIMITS,
  RESTART_DEFAULTS,
  type RestartMode,
  type RestartPolicySpec,
  validateExecutable,
} from './spec';
export { backoffDelayMs, decideAfterExit, type ExitDecision, type ExitInfo, isCleanExit, startLimitReached, wantsRestart } from './restart-policy';
export { ACTIVE_STATES, EXECUTABLE_EVENTS, EXECUTABLE_STATES, type ExecutableEvent, type ExecutableState, nextState, TRANSITIONS, TransitionError } from './state-machine';
export { findExecHelper, type IsolationSpec, type LaunchInput, type LaunchPlan, launchPlan, STATUS_FD } from './launch-plan';
export { type ExecOutcome, type LaunchedProcess, type OnOutputPiece, parseExecStatus, type ProcessExit, type ProcessLauncher, spawnLauncher } from './launcher';
export { type Clock, type OutputTap, type ExecutableSnapshot, ExecutableRunner, KILL_WAIT_MS, type LeafCgroup, type RecordedExit, type RunnerDeps, systemClock } from './runner';
