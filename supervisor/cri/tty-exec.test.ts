// Exec with a terminal, its pure parts: crun's arguments and the process spec (the real run: tty-exec.priv.test.ts).
import { describe, expect, it } from 'vitest';
import { crunTtyExecArgs, ttyExecProcess } from './tty-exec';

describe('exec with a terminal', () => {
  it('crun exec gets the console socket; the process file asks for the terminal', () => {
    const files = { process: '/r/exec/1.json', pid: '/r/exec/1.pid', log: '/r/exec/1.log', console: '/r/exec/1.console' };
    expect(crunTtyExecArgs({ stateRoot: '/run/aurae/crun', containerId: 'web.app' }, files)).toEqual([
      '--root', '/run/aurae/crun', '--log=/r/exec/1.log', 'exec', '--console-socket', '/r/exec/1.console', '--pid-file', '/r/exec/1.pid', '--process', '/r/exec/1.json', 'web.app',
    ]);
  });

  it("the container's process with the command, terminal on, TERM unless the image sets one, the size when known", () => {
    const base = { args: ['nginx'], env: ['PATH=/bin'], cwd: '/srv', user: { uid: 101, gid: 101 }, terminal: false, consoleSize: { height: 1, width: 1 }, capabilities: { bounding: ['CAP_CHOWN'] } };
    const p = ttyExecProcess(base, ['sh'], null);
    expect(p).toEqual({ args: ['sh'], env: ['PATH=/bin', 'TERM=xterm'], cwd: '/srv', user: { uid: 101, gid: 101 }, terminal: true, capabilities: { bounding: ['CAP_CHOWN'] } });
    expect(ttyExecProcess({ ...base, env: ['TERM=vt100'] }, ['sh'], { width: 80, height: 24 })).toMatchObject({ env: ['TERM=vt100'], consoleSize: { height: 24, width: 80 } });
  });
});
