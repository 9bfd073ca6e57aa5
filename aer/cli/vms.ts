// aer vm list|spawn|allocate|start|stop|free|renew: child microVMs of the node (aurae.vms.v0.VmService).
import { type Command, Option } from 'commander';
import { DEFAULTS, RANGES, type VmInfo } from '../sdk';
import { intIn } from './options';
import type { Print, WithClient } from './types';

export function formatVmTable(vms: VmInfo[]): string {
  if (vms.length === 0) return 'no VMs';
  const rows = [
    ['NAME', 'NODE', 'STATE', 'MEMORY', 'CPUS', 'ADDRESS', 'PID', 'RESTARTS', 'CELL'],
    ...vms.map((v) => [v.name, v.nodePath, v.state, `${v.memoryMiB}M`, String(v.cpus), v.address || '-', v.pid ? String(v.pid) : '-', String(v.restarts), v.confined ? 'yes' : 'no']),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

interface SpawnOptions {
  memory?: number;
  cpus?: number;
  restart?: 'never' | 'on-failure' | 'always';
}

export function registerVmCommands(program: Command, withClient: WithClient, print: Print): void {
  const vm = program.command('vm').description("child microVMs booted from the node's own image (reach one with --node <node>/<name>)");
  const spawnOptions = (c: Command) =>
    c
      .option('--memory <MiB>', `guest RAM in MiB (default ${DEFAULTS.vmMemoryMiB}; at most the node's vms.maxMemoryMiB)`, intIn(...RANGES.vmMemoryMiB))
      .option('--cpus <n>', `virtual CPUs (default ${DEFAULTS.vmCpus})`, intIn(...RANGES.vmCpus))
      .addOption(new Option('--restart <policy>', 'when QEMU exits unasked').choices(['never', 'on-failure', 'always']));
  const specOf = (name: string, o: SpawnOptions) => ({ name, memoryMiB: o.memory, cpus: o.cpus, restart: o.restart });

  vm.command('list')
    .description('VMs with state, resources, address and QEMU pid')
    .action(
      withClient(async (c, output) => {
        const vms = await c.vms.list();
        print(output, vms, formatVmTable(vms));
      }),
    );

  spawnOptions(vm.command('spawn').description("boot a child from this node's kernel and initramfs; waits until its API is ready").argument('<name>', 'DNS label')).action(
    withClient(async (c, output, name: string, options: SpawnOptions) => {
      const v = await c.vms.spawn(specOf(name, options));
      print(output, v, `spawned ${v.nodePath} at ${v.address} (pid ${v.pid}); reach it with aer --node ${v.nodePath} …`);
    }),
  );

  spawnOptions(vm.command('allocate').description('define a VM without starting it').argument('<name>', 'DNS label')).action(
    withClient(async (c, output, name: string, options: SpawnOptions) => {
      const v = await c.vms.allocate(specOf(name, options));
      print(output, v, `allocated ${v.nodePath}`);
    }),
  );

  vm.command('start')
    .description('boot an allocated or stopped VM')
    .argument('<name>')
    .action(
      withClient(async (c, output, name: string) => {
        const v = await c.vms.start(name);
        print(output, v, `started ${v.nodePath} at ${v.address} (pid ${v.pid})`);
      }),
    );

  vm.command('stop')
    .description('graceful stop: ACPI powerdown, then QMP quit after the node\'s timeout')
    .argument('<name>')
    .action(
      withClient(async (c, output, name: string) => {
        const v = await c.vms.stop(name);
        print(output, v, `stopped ${v.nodePath} (${v.lastExit || v.state})`);
      }),
    );

  vm.command('free')
    .description('remove a stopped VM')
    .argument('<name>')
    .action(
      withClient(async (c, output, name: string) => {
        await c.vms.free(name);
        print(output, { freed: name }, `freed ${name}`);
      }),
    );

  vm.command('renew')
    .description("renew a running child's certificate now (the node does it by itself at half-life); the old one is refused from then on")
    .argument('<name>')
    .action(
      withClient(async (c, output, name: string) => {
        const r = await c.vms.renew(name);
        print(output, { name, ...r }, `renewed ${name}: it serves certificate sha256 ${r.fingerprint}, valid until ${r.notAfter}`);
      }),
    );
}
