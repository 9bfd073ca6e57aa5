// The CRI streaming server (Exec, Attach, PortForward URLs): SPDY/3.1 and WebSocket, kubelet's protocols.
// A2 wires getExec/getAttach/getPortForward into the RuntimeService and provides the StreamingBackend.
export {
  type BackendAttachRequest,
  type BackendExecRequest,
  type BackendPortForwardRequest,
  type StreamingBackend,
  type StreamingServer,
  type StreamingServerOptions,
  startStreamingServer,
} from './server';
export type { TerminalSize } from './k8s-protocol';
export { TOKEN_LIMITS } from './tokens';
// The real backend's exec: pods' runExec over these streams (see exec-call.ts).
export { type ExecCallLike, type ExecCallResponse, type StreamExecCall, streamExecCall } from './exec-call';
