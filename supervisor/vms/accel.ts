// Which accelerator really works here? /dev/kvm can exist on a host whose CPU has no VMX/SVM (QEMU then
// starts but the guest never runs), so we require both the device and the CPU flag. Inside a TCG guest
// started with -cpu max, the emulated CPU advertises svm and the guest's KVM works.
import fs from 'node:fs';
import type { Accel } from './qemu-args';

export interface AccelProbe {
  readCpuinfo(): string;
  canOpenKvm(): boolean;
}

export const realAccelProbe: AccelProbe = {
  readCpuinfo: () => fs.readFileSync('/proc/cpuinfo', 'utf8'),
  canOpenKvm: () => {
    try {
      fs.closeSync(fs.openSync('/dev/kvm', 'r+'));
      return true;
    } catch {
      return false;
    }
  },
};

/** 'kvm' when /dev/kvm opens and the CPU has vmx or svm; otherwise 'tcg'. AURAE_ACCEL=kvm|tcg overrides. */
export function detectAccel(probe: AccelProbe = realAccelProbe, env = process.env): Accel {
  const forced = env.AURAE_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return forced;
  const flags = /^flags\s*:(.*)$/m.exec(probe.readCpuinfo())?.[1] ?? '';
  const hasVirt = /\b(vmx|svm)\b/.test(flags);
  return hasVirt && probe.canOpenKvm() ? 'kvm' : 'tcg';
}

/**
 * The host's TSC frequency in kHz when it is constant (so a TCG guest's TSC runs at that rate), else null.
 * Read from "cpu MHz" in /proc/cpuinfo, which on a constant-TSC machine is the TSC rate.
 */
export function hostTscKhz(cpuinfo: string = realAccelProbe.readCpuinfo()): number | null {
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '';
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1]);
  if (!/\bconstant_tsc\b/.test(flags) || !Number.isFinite(mhz) || mhz <= 0) return null;
  return Math.round(mhz * 1000);
}
