// DebugShell against a local sh behind a Unix socket (as QEMU exposes the node's console): commands, their output
// and status; and a shell that was replaced (init respawns the console's shell when it ends) is an error, not
// output read from the new shell.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DebugShell } from './debug-shell';

interface Console {
  socket: string;
  /** End the current sh and start another on the same connection, as init's respawn does. */
  respawn(): Promise<void>;
  close(): Promise<void>;
}

async function fakeConsole(): Promise<Console> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aurae-shell-'));
  const socket = path.join(dir, 'hvc0.sock');
  let conn: net.Socket | null = null;
  let sh: ChildProcess | null = null;
  const start = () => {
    const p = spawn('/bin/sh', [], { stdio: ['pipe', 'pipe', 'pipe'] });
    p.stdout.on('data', (d: Buffer) => conn?.write(d));
    p.stderr.on('data', (d: Buffer) => conn?.write(d));
    sh = p;
  };
  const server = net.createServer((c) => {
    conn = c;
    c.on('data', (d: Buffer) => sh?.stdin?.write(d));
    start();
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    socket,
    async respawn() {
      const old = sh!;
      sh = null;
      await new Promise<void>((resolve) => {
        old.once('exit', () => resolve());
        old.kill('SIGKILL');
      });
      start();
    },
    async close() {
      sh?.kill('SIGKILL');
      conn?.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('DebugShell', () => {
  let con: Console | null = null;
  let shell: DebugShell | null = null;
  afterEach(async () => {
    shell?.close();
    await con?.close();
  });

  it('runs commands: their output and exit status', async () => {
    con = await fakeConsole();
    shell = await DebugShell.connect(con.socket, 10_000);
    expect(await shell.run('echo hello; echo there')).toEqual({ output: 'hello\nthere\n', status: 0 });
    expect(await shell.run('false')).toEqual({ output: '', status: 1 });
    await expect(shell.ok('exit 3 2>/dev/null | true; (exit 4)')).rejects.toThrow(/exited 4/);
  });

  it('a command that reached a new shell (the old one ended) is an error saying so', async () => {
    con = await fakeConsole();
    shell = await DebugShell.connect(con.socket, 10_000);
    expect(await shell.ok('echo $((6*7))')).toBe('42\n');
    await con.respawn();
    await expect(shell.run('echo after')).rejects.toThrow(/ran in a new shell: the one this connection set up has ended/);
  });
});
