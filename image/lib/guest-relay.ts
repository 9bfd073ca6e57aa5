// A TCP relay inside a booted node, started from its debug shell: the guest's 0.0.0.0:PORT → a Unix socket (e.g.
// the CRI's /run/aurae/cri.sock) or a host:port of the guest (e.g. the CRI streaming server). The host reaches it
// through one of QEMU's host forwards (the restricted user network gives the host no other way in).
// The relay is init's child: not auraed's, so it outlives an auraed restart; and not the debug shell's, because
// that shell (busybox ash, interactive on the console, with echo off as DebugShell sets it) reads its input with
// a plain fgets, and a background child's SIGCHLD arriving during that read ends the shell as if its input had
// ended (init respawns a fresh shell; the tests' session and its settings are gone). Used by qemu-tests/45-cri,
// 47-cri-more and image/bench/cri.
import http from 'node:http';
import type { DebugShell } from './debug-shell';

type Shell = Pick<DebugShell, 'ok'>;

/**
 * The relay's program, run by the guest's node (argv: port, target, ready file, address). It writes its pid to the ready
 * file from its own listen callback, so "listening" is known to be this process's socket, not a predecessor's.
 */
export const GUEST_RELAY_JS = [
  "const net = require('node:net');",
  "const fs = require('node:fs');",
  'const [, , port, target, ready, address] = process.argv;',
  "const to = () => (target.startsWith('/') ? net.connect(target) : net.connect(Number(target.split(':')[1]), target.split(':')[0]));",
  'const server = net.createServer((c) => {',
  '  const u = to();',
  '  c.pipe(u); u.pipe(c);',
  "  for (const [a, b] of [[c, u], [u, c]]) { a.on('error', () => b.destroy()); a.on('close', () => b.destroy()); }",
  '});',
  "server.on('error', (err) => { console.error(`relay: port ${port}: ${err.message}`); process.exit(1); });",
  "server.listen(Number(port), address, () => fs.writeFileSync(ready, String(process.pid)));",
].join('\n');

/** Where the relay's program is written in the guest. */
const GUEST_RELAY_FILE = '/tmp/cri-relay.cjs';
const readyFile = (port: number) => `/tmp/cri-relay-${port}.ready`;
const logFile = (port: number) => `/tmp/cri-relay-${port}.log`;

/** A shell test that prints "listening" while anything listens on TCP `port` (IPv4, as the relay binds). */
function listenerCheck(port: number): string {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return `grep -q ':${hexPort} 00000000:0000 0A' /proc/net/tcp && echo listening || echo free`;
}

async function until(what: () => Promise<boolean>, timeoutMs: number, failure: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error(await failure());
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Stop the relay `pid` on `port` and wait (bounded by `timeoutMs`) until the process is gone and nothing listens on
 * the port, so a new relay can bind it. The port is checked too: a free port is what the next bind needs, and a
 * process whose main thread is already a zombie may still have threads exiting that hold its sockets.
 */
export async function stopGuestRelay(shell: Shell, pid: string, port: number, timeoutMs = 30_000): Promise<void> {
  if (!/^\d+$/.test(pid)) throw new Error(`guest relay: "${pid}" is not a pid`);
  await shell.ok(`kill ${pid} 2>/dev/null; true`);
  // A zombie (exited, not yet reaped by init) runs nothing; its sockets are checked through the port.
  const alive = `grep -qs '^State:[[:space:]]*[^Z]' /proc/${pid}/status && echo alive || echo gone`;
  await until(
    async () => (await shell.ok(alive)).trim() === 'gone' && (await shell.ok(listenerCheck(port))).trim() === 'free',
    timeoutMs,
    async () => `guest relay: pid ${pid} or a listener on port ${port} is still there ${timeoutMs} ms after SIGTERM: see the node's console`,
  );
}

export interface RelayOptions {
  timeoutMs?: number;
  /** The node binary (default the image's /usr/bin/node). */
  node?: string;
  /** Where the relay listens (default 0.0.0.0: QEMU's user network reaches the guest's own address). */
  address?: string;
}

/**
 * Start a relay on guest port `port` to `target` (an absolute socket path, or host:port) and wait until it listens
 * (QEMU accepts the host's connection either way, then resets it when nothing listens in the guest); its pid (as
 * the relay wrote it). A relay that fails (its port taken) is reported with what it printed.
 */
export async function startGuestRelay(shell: Shell, port: number, target: string, opts: RelayOptions = {}): Promise<string> {
  const { timeoutMs = 30_000, node = '/usr/bin/node', address = '0.0.0.0' } = opts;
  // One line (base64), not a heredoc: the debug shell reads commands line by line, and a heredoc split across
  // its reads was once run as separate commands. Written each time: a program from an older run may differ.
  const program = Buffer.from(GUEST_RELAY_JS).toString('base64');
  await shell.ok(`echo '${program}' | base64 -d > ${GUEST_RELAY_FILE}.tmp && mv ${GUEST_RELAY_FILE}.tmp ${GUEST_RELAY_FILE}`);
  await shell.ok(`rm -f ${readyFile(port)} ${logFile(port)}`);
  // In a subshell that exits at once: the relay becomes init's child, not the debug shell's (see the header).
  await shell.ok(`(${node} ${GUEST_RELAY_FILE} ${port} ${target} ${readyFile(port)} ${address} </dev/null >${logFile(port)} 2>&1 &)`);
  let pid = '';
  await until(
    async () => {
      pid = (await shell.ok(`cat ${readyFile(port)} 2>/dev/null; true`)).trim();
      if (/^\d+$/.test(pid)) return true;
      // It prints only when it fails, and then exits.
      const printed = (await shell.ok(`cat ${logFile(port)} 2>/dev/null; true`)).trim();
      if (printed) throw new Error(`guest relay: port ${port} → ${target} failed before listening: ${printed}`);
      return false;
    },
    timeoutMs,
    async () => `guest relay: port ${port} → ${target} is not listening after ${timeoutMs} ms: see the node's console`,
  );
  return pid;
}

/** One plain HTTP request to host port `port`; resolves with the answer's status, rejects on a connection error. */
function httpStatus(port: number, path: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/**
 * A relay to the CRI streaming server, for the host's clients of streaming URLs. The server listens on 127.0.0.1 at
 * a port auraed picks at each start, so the relay is moved when a URL names another port. A new relay is used only
 * once the server answers through it from the host (QEMU's forward, the relay, the server): a streaming URL is
 * good for one connection, and a reset on the way would spend it.
 */
export class StreamingRelay {
  private target = '';
  private pid = '';

  /** `guestPort`: the relay's port in the guest; `hostPort`: the host's forward to it. */
  constructor(
    private readonly shell: () => Promise<Shell>,
    private readonly guestPort: number,
    private readonly hostPort: number,
    private readonly relayOptions: RelayOptions = {},
  ) {}

  /** The streaming `url` (http://127.0.0.1:PORT/…, the guest's) as the host reaches it through the relay. */
  async hostUrl(url: string): Promise<string> {
    const u = new URL(url);
    const target = `127.0.0.1:${u.port}`;
    if (this.target !== target) {
      const shell = await this.shell();
      if (this.pid !== '') await stopGuestRelay(shell, this.pid, this.guestPort);
      this.target = '';
      this.pid = await startGuestRelay(shell, this.guestPort, target, this.relayOptions);
      await this.answering(target);
      this.target = target;
    }
    return `http://127.0.0.1:${this.hostPort}${u.pathname}${u.search}`;
  }

  /** Stop the relay (a node that powers off stops it too). */
  async close(): Promise<void> {
    if (this.pid === '') return;
    await stopGuestRelay(await this.shell(), this.pid, this.guestPort);
    this.pid = '';
    this.target = '';
  }

  /** Wait (30 s at most) until a request through the relay gets the streaming server's 404 for an unknown path. */
  private async answering(target: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const failures: string[] = [];
    for (;;) {
      try {
        const status = await httpStatus(this.hostPort, '/relay-probe', 5_000);
        if (status === 404) {
          // Said, so a run's log shows it: a relay that listens but does not answer at once is worth knowing.
          if (failures.length > 0) console.warn(`streaming relay to ${target}: answered after ${failures.length} failed tries: ${failures.slice(-3).join('; ')}`);
          return;
        }
        failures.push(`HTTP ${status}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
      if (Date.now() > deadline) {
        throw new Error(`the streaming server (${target}) does not answer through the relay on host port ${this.hostPort} after ${timeoutMs} ms: ${failures.slice(-3).join('; ')}: see the node's console`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
