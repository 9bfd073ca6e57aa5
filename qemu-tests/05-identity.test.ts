// 05: the node's identity is not in the image. Booted with it over fw_cfg (the fixture default, as npm start),
// the node serves with its keys in /run/aurae/pki only; booted without it, the node says so on the console (text
// and an AURAE_NO_IDENTITY line) and serves nothing. In both, nothing a workload or a child can read (/boot, /etc,
// the image) holds a private key.
import fs from 'node:fs';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { connect } from '../aer/sdk';
import { bootNode, NO_IDENTITY, testImage, type BootedNode } from './fixture/node';

/**
 * Every file a workload or a child sees that holds a PEM private key: a "-----BEGIN … PRIVATE KEY-----" line followed
 * by a base64 body (the marker alone is in TLS libraries and in our own validators). A planted probe in /tmp must
 * be the only one found: the search itself is shown to work.
 */
const PROBE_BODY = 'MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgAAAAAAAAAAAAAAAAAAAAAAAA';
const KEY_FILES = [
  `printf '%s\\n' '-----BEGIN PRIVATE KEY-----' '${PROBE_BODY}' '-----END PRIVATE KEY-----' > /tmp/aurae-probe`,
  // QEMU's libgnutls on /boot holds GnuTLS's public self-test keys (00-image checks them by digest).
  "for f in $(grep -rlF 'PRIVATE KEY-----' $(ls -d /boot /etc /usr /bin /sbin /lib /lib64 /var /root /tmp 2>/dev/null)); do " +
    'case "$f" in */libgnutls.so.30) continue;; esac; ' +
    "awk 'p && /^[A-Za-z0-9+\\/=]+\\r?$/ && length($0) >= 40 { print FILENAME; exit } { p = /-----BEGIN [A-Z ]*PRIVATE KEY-----\\r?$/ }' \"$f\"; done",
  'rm -f /tmp/aurae-probe',
].join('; ');

describe('05 identity', () => {
  let node: BootedNode | null = null;
  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail' && node) console.error(`--- console (full log: ${node.consoleLog}) ---\n${node.vm.tail(60)}`);
    await node?.stop();
    node = null;
  });
  afterAll(async () => {
    await node?.stop();
  });

  it('with the identity over fw_cfg: serves, keys only in /run/aurae/pki (0700/0600), none in /boot or the image', async () => {
    node = await bootNode({ name: '05-identity', bootVolume: true });
    expect(node.vm.console).toMatch(/init: identity: node aurae from fw_cfg opt\/aurae\/identity, with its spawn CA; PEMs in \/run\/aurae\/pki/);
    const client = node.client();
    try {
      expect((await client.health.check('')).status).toBe('SERVING');
    } finally {
      client.close();
    }
    const sh = await node.shell();
    expect((await sh.ok('stat -c "%a %n" /run/aurae/pki /run/aurae/pki/node.key /run/aurae/pki/spawn-ca.key')).trim().split('\n')).toEqual([
      '700 /run/aurae/pki',
      '600 /run/aurae/pki/node.key',
      '600 /run/aurae/pki/spawn-ca.key',
    ]);
    // Certificates only: the root CA and the pinned image-signing certificate (issue 14), both public.
    expect((await sh.ok('ls /etc/aurae/pki')).trim().split(/\s+/).sort()).toEqual(['ca.crt', 'image-signing.crt']);
    expect((await sh.ok('ls /boot')).split(/\s+/)).toContain('aurae-boot.json');
    expect((await sh.run(KEY_FILES, 120_000)).output.trim()).toBe('/tmp/aurae-probe');
    // fw_cfg items are root-only (0400) in sysfs.
    expect((await sh.ok('stat -c %a /sys/firmware/qemu_fw_cfg/by_name/opt/aurae/identity/raw')).trim()).toBe('400');
    // The log names the source, never a key.
    const key = fs.readFileSync(`${testImage().pkiDir}/node.key`, 'utf8').split('\n')[1]!;
    expect(node.vm.console).not.toContain(key);
  }, 420_000);

  it('without an identity: says so with what to do, prints AURAE_NO_IDENTITY, starts no auraed and serves nothing', async () => {
    node = await bootNode({ name: '05-no-identity', identity: false, waitFor: 'no-identity' });
    const out = node.vm.console;
    expect(out).toMatch(/init: error: no identity for node aurae: auraed is not started and this node serves nothing/);
    expect(out).toMatch(/aer image flash out\/image\/disk.raw \/dev\/DISK --identity out\/pki\/identity.json/);
    const report = JSON.parse(NO_IDENTITY.exec(out)![1]!) as { node: string; tried: { source: string; problem: string }[]; fix: string[] };
    expect(report.node).toBe('aurae');
    expect(report.tried).toEqual([
      { source: 'fw_cfg opt/aurae/identity', problem: 'not given' },
      { source: 'partition AURAE_IDENTITY', problem: 'no such partition on the boot disk' },
    ]);
    expect(out).not.toMatch(/AURAE_READY/);
    const sh = await node.shell();
    expect((await sh.run('ls /run/aurae/pki')).status).not.toBe(0);
    expect((await sh.ok("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")).includes('auraed.cjs')).toBe(false);
    expect((await sh.run(KEY_FILES, 120_000)).output.trim()).toBe('/tmp/aurae-probe');
    const client = connect({ config: node.image.clientConfig, address: `127.0.0.1:${node.port}`, timeoutMs: 5_000 });
    try {
      await expect(client.health.check('')).rejects.toThrow();
    } finally {
      client.close();
    }
  }, 420_000);
});
