// Loopback and the one configured interface (eth0), planned from config then applied.
// A node without eth0 still serves on loopback and the unix socket, so a missing NIC is
// a warning, never fatal.
import { isErrno, type Syscalls } from '../../native';
import type { NodeConfig } from '../../supervisor/config';
import { errorMessage, type Logger } from '../log';

export type NetStep =
  | { kind: 'up'; ifname: string }
  | { kind: 'address'; ifname: string; address: string; prefixLen: number }
  | { kind: 'default-route'; ifname: string; gateway: string };

export function describeNetStep(step: NetStep): string {
  switch (step.kind) {
    case 'up':
      return `${step.ifname} up`;
    case 'address':
      return `${step.ifname} address ${step.address}/${step.prefixLen}`;
    case 'default-route':
      return `default route via ${step.gateway} (${step.ifname})`;
  }
}

/** lo up; then, for a static eth0: address, up, default route (when a gateway is set). */
export function networkPlan(network: NodeConfig['network']): NetStep[] {
  const steps: NetStep[] = [{ kind: 'up', ifname: 'lo' }];
  const eth0 = network.eth0;
  if (eth0.mode === 'static') {
    const [address = '', prefix = '32'] = eth0.address.split('/');
    steps.push({ kind: 'address', ifname: 'eth0', address, prefixLen: Number(prefix) });
    steps.push({ kind: 'up', ifname: 'eth0' });
    if (eth0.gateway) steps.push({ kind: 'default-route', ifname: 'eth0', gateway: eth0.gateway });
  }
  return steps;
}

/**
 * Apply the plan. Once an interface turns out to be missing (ENODEV) its remaining steps
 * are skipped with one warning; other failures are logged and the next step runs.
 * Returns the steps that succeeded.
 */
export function applyNetwork(plan: NetStep[], deps: { syscalls: Pick<Syscalls, 'setInterfaceUp' | 'setInterfaceAddress' | 'addDefaultRoute'>; log: Logger }): NetStep[] {
  const missing = new Set<string>();
  const done: NetStep[] = [];
  for (const step of plan) {
    if (missing.has(step.ifname)) continue;
    try {
      if (step.kind === 'up') deps.syscalls.setInterfaceUp(step.ifname);
      else if (step.kind === 'address') deps.syscalls.setInterfaceAddress(step.ifname, step.address, step.prefixLen);
      else deps.syscalls.addDefaultRoute(step.gateway);
      deps.log.info(`network: ${describeNetStep(step)}`);
      done.push(step);
    } catch (err) {
      if (isErrno(err, 'ENODEV')) {
        missing.add(step.ifname);
        deps.log.warn(
          `network: ${step.ifname} not present, skipping its configuration (is the NIC attached and its driver built in?)`,
        );
      } else if (step.kind === 'default-route' && isErrno(err, 'EEXIST')) {
        deps.log.info(`network: ${describeNetStep(step)} already present`);
        done.push(step);
      } else {
        deps.log.warn(`network: ${describeNetStep(step)} failed: ${errorMessage(err)}`);
      }
    }
  }
  return done;
}
