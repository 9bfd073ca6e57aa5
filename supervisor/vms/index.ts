// VMs: plan QEMU arguments, launch, and control through QMP. Used by the image tooling, the boot tests and
// the benchmarks now, and by auraed's VM service later.
export { qemuArgs, kernelCmdline, validateVmSpec, VmSpecError, type Accel, type PortForward, type VmSpec } from './qemu-args';
export { QmpClient, QmpError, type QmpEvent, type QmpStatus } from './qmp';
export { launchVm, Vm, ConsoleTimeoutError, type LaunchOptions, type VmExit } from './launch';
export { detectAccel, hostTscKhz, realAccelProbe, type AccelProbe } from './accel';
