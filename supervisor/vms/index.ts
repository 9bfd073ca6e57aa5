// VMs: plan QEMU arguments, launch, and control through QMP (used by the image tooling, the boot tests and the
// benchmarks), and auraed's VM service: child microVMs spawned from the node's own image, and routing to them.
export { qemuArgs, kernelCmdline, validateVmSpec, VmSpecError, type Accel, type GuestForward, type PortForward, type VmSpec } from './qemu-args';
export { QmpClient, QmpError, type QmpEvent, type QmpStatus } from './qmp';
export { launchVm, Vm, ConsoleTimeoutError, type LaunchOptions, type VmExit } from './launch';
export { detectAccel, hostTscKhz, realAccelProbe, type AccelProbe } from './accel';
export {
  canTransition,
  CHILD_API_PORT,
  checkSpawnDepth,
  childBaseConfig,
  childVmSpec,
  DEFAULT_VM_MEMORY_MIB,
  MAX_RESTARTS,
  nodeDepth,
  RESTART_POLICIES,
  type RestartPolicy,
  shouldRestart,
  validateVmName,
  validateVmRequest,
  VM_TRANSITIONS,
  type VmRequest,
  type VmState,
} from './vm-model';
export { type ChildIdentity, type GuestAdapter, type VmEvent, type VmProcess, VmRuntime, type VmRuntimeDeps, type VmStatus } from './vm-runtime';
export { createVmService, vmStatusToProto } from './vm-service';
export { cgroupConfiner, createChildRouter, freeLoopbackPort, QEMU_OVERHEAD_MIB } from './vm-host';
export { createNodeVms, type NodeGuest, type NodeVms, type NodeVmsOptions } from './vm-node';
export { type ChildCertRenewer, type ChildCertRenewerOptions, type ChildRenewal, createChildCertRenewer } from './cert-renewal';
export { memoryVmStore, sqliteVmStore, type StoredVm, type VmExitRecord, type VmStore, VMS_MIGRATIONS } from './vm-store';
export { isLeftoverQemu, shouldResumeVm, type VmReconcileAction, vmReconcilePlan } from './vm-reconcile';
export { type LeftoverControl, procLeftovers } from './vm-leftovers';
export { VmServiceService } from '../gen/aurae/vms/v0/vms';
