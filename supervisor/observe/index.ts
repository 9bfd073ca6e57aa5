// Observe: lifecycle events, executables' logs, auraed's own log stream and per-cell metrics, and the
// aurae.observe.v0.ObserveService over them. The runtime (cells, executables) depends on ./types only.
export type { AuraeEvent, CellPath, EventBus, LogLine, LogSink, LogStore, LogStream, PodLifecycleEvent, StampedEvent, VmLifecycleEvent } from './types';
export { type EventBusOptions, createEventBus } from './event-bus';
export { type FileLogStore, type FileLogStoreOptions, createFileLogStore } from './log-store';
export { type LogFileHandle, type LogFs, nodeLogFs } from './log-fs';
export { type CellMetricsRow, type MetricsFs, type MetricsReader, type MetricsSnapshot, createMetricsReader } from './metrics';
export { cellPathProblem, executableNameProblem, isCellWithin, validateCellPath, validateExecutableName } from './names';
export { MAX_TAIL } from './requests';
export { type Observe, type ObserveOptions, type ObserveOverrides, createObserve } from './observe';
export { createObserveService } from './observe-service';
export { ObserveServiceService } from '../gen/aurae/observe/v0/observe';
