import { describe, expect, it } from 'vitest';
import type { VmInfo } from '../sdk';
import { connectOptions } from './program';
import { formatVmTable } from './vms';

describe('--node', () => {
  it('a node name stays the TLS server name; a node path routes through the configured node', () => {
    expect(connectOptions({ node: 'n2' }, {})).toEqual({ config: undefined, address: undefined, env: {}, node: 'n2' });
    expect(connectOptions({ node: 'aurae/web', config: '/c.json' }, {})).toEqual({ config: '/c.json', address: undefined, env: {}, targetNode: 'aurae/web' });
    expect(connectOptions({}, {})).not.toHaveProperty('targetNode');
  });
});

describe('formatVmTable', () => {
  it('one row per VM with state, resources, address and pid', () => {
    const vm: VmInfo = { name: 'web', nodePath: 'aurae/web', state: 'running', memoryMiB: 512, cpus: 1, restart: 'never', address: '127.0.0.1:4000', tlsName: 'web.aurae', pid: 77, restarts: 0, lastExit: '', confined: false };
    expect(formatVmTable([vm, { ...vm, name: 'db', nodePath: 'aurae/db', state: 'stopped', address: '', pid: 0 }]).split('\n')).toEqual([
      'NAME  NODE       STATE    MEMORY  CPUS  ADDRESS         PID  RESTARTS  CELL',
      'web   aurae/web  running  512M    1     127.0.0.1:4000  77   0         no',
      'db    aurae/db   stopped  512M    1     -               -    0         no',
    ]);
    expect(formatVmTable([])).toBe('no VMs');
  });
});
