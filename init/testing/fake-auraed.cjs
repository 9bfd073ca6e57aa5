// A stand-in for auraed in init's priv tests (plain CommonJS: runs under bare node).
// It logs JSON lines, sends the 'ready' IPC message, optionally orphans a grandchild and
// optionally exits after a while. Behaviour comes from the environment:
//   FAKE_EXIT_AFTER_MS  exit this long after ready (unset: run until signalled)
//   FAKE_EXIT_CODE      code for that exit (default 3)
//   FAKE_ORPHAN_SLEEP   seconds the orphaned `sleep` lives (unset: no orphan)
//   FAKE_POWER          send {type:'power', action: FAKE_POWER} after ready
'use strict';
const { execFileSync } = require('node:child_process');

const log = (fields) => process.stdout.write(`${JSON.stringify({ fake: true, pid: process.pid, ...fields })}\n`);
const configIndex = process.argv.indexOf('--config');
log({ msg: 'starting', hostname: require('node:os').hostname(), config: configIndex === -1 ? null : process.argv[configIndex + 1] });

process.on('SIGTERM', () => {
  log({ msg: 'SIGTERM received, exiting' });
  process.exit(0);
});

if (typeof process.send !== 'function') {
  log({ msg: 'no IPC channel: not started by aurae init' });
  process.exit(64);
}

process.send({ type: 'ready', node: 'fake-node', version: '0.0.0-fake', socket: '/tmp/fake.sock', tcp: null });

if (process.env.FAKE_ORPHAN_SLEEP) {
  // Double fork: the subshell exits at once, so `sleep` is re-parented to the nearest
  // subreaper (init) and becomes init's zombie when it ends.
  const out = execFileSync('sh', ['-c', `(sleep ${Number(process.env.FAKE_ORPHAN_SLEEP)} >/dev/null 2>&1 & echo $!)`], { encoding: 'utf8' });
  log({ msg: 'orphaned a grandchild', orphan: Number(out.trim()) });
}

if (process.env.FAKE_POWER) {
  process.send({ type: 'power', action: process.env.FAKE_POWER, by: 'fake-admin' });
}

if (process.env.FAKE_EXIT_AFTER_MS) {
  setTimeout(() => {
    log({ msg: 'exiting on purpose' });
    process.exit(Number(process.env.FAKE_EXIT_CODE ?? 3));
  }, Number(process.env.FAKE_EXIT_AFTER_MS));
} else {
  setInterval(() => {}, 1 << 30);
}
