// The CRI log tap with the real aurae-exec (root: namespaces), as a pod container runs: the runner launches the
// helper, which execs the program in new pid/mount/uts/ipc namespaces; every output line reaches the CRI log file,
// and kubelet's rotation (rename + ReopenContainerLog) splits the file while the program keeps writing. The host
// has no cgroup v2: the leaf is a temp dir whose cgroup.procs is a plain file, as in launcher.priv.test.ts.
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAuraeExec } from '../../../native/build';
import { type LeafCgroup, ExecutableRunner, spawnLauncher, systemClock } from '../../executables';
import { validateExecutable } from '../../executables/spec';
import { MemoryEventBus, MemoryLogStore } from '../../executables/testing';
import { silentLogger } from '../../log';
import { parseCriLog } from './format';
import { createContainerLogTaps } from './taps';

let dir: string;
let helper: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'aurae-cri-log-priv-'));
  helper = await buildAuraeExec({ outFile: path.join(dir, 'aurae-exec') });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fileLeaf(): LeafCgroup {
  const leafDir = mkdtempSync(path.join(dir, 'leaf-'));
  writeFileSync(path.join(leafDir, 'cgroup.procs'), '');
  return { dir: leafDir, prepare: () => 'existing' as const, procs: () => [], kill: () => {}, waitEmpty: async () => true, oomKills: () => 0, watchEvents: () => () => {} };
}

async function until(check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const read = (file: string) => (existsSync(file) ? parseCriLog(readFileSync(file, 'utf8')) : []);

describe('CRI container log through aurae-exec', () => {
  it('lines before and after a rotation land in the renamed and the new file, in the CRI format', async () => {
    const file = path.join(dir, 'pods', 'default_web_uid', 'app', '0.log');
    const go = path.join(dir, 'go');
    // The program writes one line, waits for the test's signal file, writes the rest (no fixed sleeps).
    const script = `echo first; while [ ! -e ${go} ]; do sleep 0.02; done; echo second; echo oops >&2; printf last`;
    const taps = createContainerLogTaps({ log: silentLogger });
    const handle = taps.register('k8s-web', 'c-app', file);
    const runner = new ExecutableRunner({
      cell: 'k8s-web',
      spec: validateExecutable({ name: 'c-app', command: '', description: '', args: ['/bin/sh', '-c', script], env: {}, cwd: '' }),
      isolation: { pid: true, mount: true, uts: true, ipc: true, network: false },
      hostname: 'k8s-web',
      leaf: fileLeaf(),
      launcher: spawnLauncher,
      helper: () => helper,
      events: new MemoryEventBus(),
      logs: new MemoryLogStore(),
      outputTap: taps,
      clock: systemClock,
      log: silentLogger,
      signal: (pid, sig) => process.kill(pid, sig),
      onChange: () => {},
    });
    await runner.start();
    await until(() => read(file).some((r) => r.text === 'first'), 'the first line');
    renameSync(file, `${file}.rotated`);
    expect(handle.reopen()).toBeNull();
    writeFileSync(go, '');
    await until(() => runner.snapshot().state === 'exited' && read(file).some((r) => r.text === 'last'), 'the exit and the last line');
    handle.close();
    expect(read(`${file}.rotated`).map((r) => [r.stream, r.partial, r.text])).toEqual([['stdout', false, 'first']]);
    const after = read(file).map((r) => [r.stream, r.partial, r.text]);
    expect(after.filter((r) => r[0] === 'stdout')).toEqual([
      ['stdout', false, 'second'],
      ['stdout', true, 'last'],
    ]);
    expect(after.filter((r) => r[0] === 'stderr')).toEqual([['stderr', false, 'oops']]);
    expect(readFileSync(file, 'utf8')).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z stdout F second\n/);
    taps.close();
  });
});
