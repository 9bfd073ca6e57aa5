// A TCP relay inside a booted node, started from its debug shell: the guest's 0.0.0.0:PORT → a Unix socket (e.g.
// the CRI's /run/aurae/cri.sock) or a host:port of the guest (e.g. the CRI streaming server). The host reaches it
// through one of QEMU's host forwards (the restricted user network gives the host no other way in). The relay is
// the shell's child, not auraed's: it outlives an auraed restart. Used by qemu-tests/45-cri and image/bench/cri.
import type { DebugShell } from './debug-shell';

/** The relay's program, run by the guest's node (argv: port, target). */
export const GUEST_RELAY_JS = [
  "const net = require('node:net');",
  'const [, , port, target] = process.argv;',
  "const to = () => (target.startsWith('/') ? net.connect(target) : net.connect(Number(target.split(':')[1]), target.split(':')[0]));",
  'net.createServer((c) => {',
  '  const u = to();',
  '  c.pipe(u); u.pipe(c);',
  "  for (const [a, b] of [[c, u], [u, c]]) { a.on('error', () => b.destroy()); a.on('close', () => b.destroy()); }",
  "}).listen(Number(port), '0.0.0.0');",
].join('\n');

/** Where the relay's program is written in the guest. */
const GUEST_RELAY_FILE = '/tmp/cri-relay.cjs';

/**
 * Stop a relay and wait until it is gone (bounded by `timeoutMs`), so a new relay on its port can bind: a relay
 * still exiting holds the port, and the new one's wait below would take the old listener for the new one.
 */
export async function stopGuestRelay(shell: Pick<DebugShell, 'ok'>, pid: string, timeoutMs = 30_000): Promise<void> {
  if (!/^\d+$/.test(pid)) throw new Error(`guest relay: "${pid}" is not a pid`);
  await shell.ok(`kill ${pid} 2>/dev/null; true`);
  const deadline = Date.now() + timeoutMs;
  // A zombie (exited, not yet reaped by the shell) holds no socket: it counts as gone.
  const alive = `grep -qs '^State:[[:space:]]*[^Z]' /proc/${pid}/status && echo alive || echo gone`;
  while ((await shell.ok(alive)).trim() === 'alive') {
    if (Date.now() > deadline) throw new Error(`guest relay: pid ${pid} still runs ${timeoutMs} ms after SIGTERM: see the node's console`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Start a relay on guest port `port` to `target` (an absolute socket path, or host:port) and wait until it listens
 * (QEMU accepts the host's connection either way, then resets it when nothing listens in the guest); its pid.
 */
export async function startGuestRelay(shell: Pick<DebugShell, 'ok'>, port: number, target: string, timeoutMs = 30_000): Promise<string> {
  // One line (base64), not a heredoc: the debug shell reads commands line by line, and a heredoc split across
  // its reads was once run as separate commands.
  const program = Buffer.from(GUEST_RELAY_JS).toString('base64');
  await shell.ok(`test -f ${GUEST_RELAY_FILE} || { echo '${program}' | base64 -d > ${GUEST_RELAY_FILE}.tmp && mv ${GUEST_RELAY_FILE}.tmp ${GUEST_RELAY_FILE}; }`);
  const pid = (await shell.ok(`/usr/bin/node ${GUEST_RELAY_FILE} ${port} ${target} >/dev/null 2>&1 & echo $!`)).trim();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      if ((await shell.ok(`grep -c ':${hexPort} 00000000:0000 0A' /proc/net/tcp || true`)).trim() !== '0') return pid;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`guest relay: port ${port} → ${target} is not listening after ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ''}: see the node's console`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
