// CRI container log files (kubelet's log_directory/log_path): the record format, one writer per container that
// follows kubelet's rotation (ReopenContainerLog), and the taps that feed executables' output into them.
export {
  criLogLine,
  type CriLogRecord,
  type CriLogTag,
  createWallClockNs,
  formatRfc3339Nano,
  joinCriLogRecords,
  parseCriLog,
  parseCriLogLine,
  parseRfc3339Nano,
} from './format';
export { type ContainerLog, type ContainerLogFs, type ContainerLogOptions, containerLogPath, MAX_PENDING_BYTES, nodeContainerLogFs, openContainerLog, RETRY_AFTER_MS } from './writer';
export { type ContainerLogHandle, type ContainerLogTaps, type ContainerLogTapsOptions, createContainerLogTaps } from './taps';
export { type FollowRemoteOutput, withRemoteOutput } from './remote-output';
