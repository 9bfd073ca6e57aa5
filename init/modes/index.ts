// The two ways init runs: as the appliance's PID 1, or as a dev daemon on a host.
export { runPid1 } from './pid1';
export { runDevDaemon } from './dev';
export { installFatalHandlers } from './common';
