import { describe, expect, it } from 'vitest';
import { Event as ProtoEvent } from '../../supervisor/gen/aurae/observe/v0/observe';
import { eventMessage } from '../../supervisor/observe/requests';
import type { StampedEvent } from '../../supervisor/observe/types';
import { fromProtoEvent } from './observe';

const t = { seq: 7, time: '2026-01-01T00:00:00.000Z' };
const every: StampedEvent[] = [
  { kind: 'cell_allocated', ...t, cell: 'web' },
  { kind: 'cell_freed', ...t, cell: 'web/cache' },
  { kind: 'executable_started', ...t, cell: 'web', executable: 'api', pid: 123 },
  { kind: 'executable_exited', ...t, cell: 'web', executable: 'api', pid: 123, code: 0, signal: null },
  { kind: 'executable_exited', ...t, cell: 'web', executable: 'api', pid: 123, code: null, signal: 'SIGKILL' },
  { kind: 'executable_restarted', ...t, cell: 'web', executable: 'api', attempt: 3, delayMs: 800 },
  { kind: 'executable_oom_killed', ...t, cell: 'web', executable: 'api', count: 2 },
  { kind: 'start_limit_hit', ...t, cell: 'web', executable: 'api', starts: 5, intervalMs: 10_000 },
  { kind: 'vm_started', ...t, vm: 'web', pid: 4242, address: '127.0.0.1:40001' },
  { kind: 'vm_exited', ...t, vm: 'web', pid: 4242, code: 0, signal: null, expected: true },
  { kind: 'vm_exited', ...t, vm: 'web', pid: 4242, code: null, signal: 'SIGKILL', expected: false },
  { kind: 'vm_restarted', ...t, vm: 'web', attempt: 2, delayMs: 2000 },
  { kind: 'vm_failed', ...t, vm: 'web', reason: 'restart limit (5) reached' },
  { kind: 'image_pulled', ...t, cell: 'hello', pod: 'hello', container: 'echo', image: '10.0.2.100:5000/busybox:latest', digest: `sha256:${'a'.repeat(64)}`, bytes: 1_234_567 },
  { kind: 'container_created', ...t, cell: 'hello', pod: 'hello', container: 'echo', image: 'busybox', digest: `sha256:${'b'.repeat(64)}` },
  { kind: 'container_started', ...t, cell: 'hello', pod: 'hello', container: 'echo', pid: 321 },
  { kind: 'container_exited', ...t, cell: 'hello', pod: 'hello', container: 'echo', pid: 321, code: 0, signal: null, oomKilled: false },
  { kind: 'container_exited', ...t, cell: 'hello', pod: 'hello', container: 'echo', pid: 321, code: 137, signal: null, oomKilled: true },
  { kind: 'container_exited', ...t, cell: 'hello', pod: 'hello', container: 'echo', pid: 321, code: null, signal: 'SIGKILL', oomKilled: false },
  { kind: 'container_oom_killed', ...t, cell: 'hello', pod: 'hello', container: 'echo', count: 1 },
];

describe('events over the wire', () => {
  it.each(every.map((e) => [e.kind, e] as const))('%s: what auraed publishes is what the SDK yields (exit code 0 included)', (_kind, event) => {
    const wire = ProtoEvent.decode(ProtoEvent.encode(eventMessage(event)).finish());
    expect(fromProtoEvent(wire)).toEqual(event);
  });

  it('a VM event carries no cell and a cell event no vm on the wire', () => {
    expect(eventMessage({ kind: 'vm_failed', ...t, vm: 'db', reason: 'x' })).toMatchObject({ cell: '', executable: '', vm: 'db', reason: 'x' });
    expect(eventMessage(every[0]!)).toMatchObject({ cell: 'web', vm: '', address: '', expected: false, reason: '' });
  });

  it('skips kinds it does not know (a newer auraed)', () => {
    expect(fromProtoEvent({ ...eventMessage(every[0]!), kind: 99 as never })).toBeUndefined();
  });
});
