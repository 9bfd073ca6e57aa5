// auraed's stop writes the refusals still waiting in the audit log's batch: a real auraed in-process (real
// sockets, real SQLite file) whose batch timer is an hour, so nothing but the shutdown can have written them.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type AuraeClient, AuraeApiError, connect } from '../../aer/sdk';
import { parseNodeConfigText } from '../config';
import { startAuraed } from '../daemon';
import { type PreparedNode, prepareTestNode } from '../daemon/testing';
import { silentLogger } from '../log';
import { openDatabase } from '../store';

describe('audit log batches at auraed shutdown', () => {
  let node: PreparedNode | undefined;
  const clients: AuraeClient[] = [];

  afterAll(() => {
    for (const c of clients) c.close();
    node?.cleanup();
  });

  it('a refusal still in the batch when auraed stops is in the database afterwards; the accepted edit was written at once', async () => {
    node = await prepareTestNode({ nodeName: 'audit-stop-1', config: { authz: { admins: ['admin'], audit: { maxRecords: 20 } } } });
    const config = parseNodeConfigText(readFileSync(node.configPath, 'utf8'), node.configPath);
    const auraed = await startAuraed({ config, log: silentLogger, init: null, storageStatusText: null, auditFlushIntervalMs: 3_600_000 });
    const rows = () => {
      const db = openDatabase(join(config.state.dir, 'aurae.db'));
      try {
        return db.prepare('SELECT identity, method, code, count FROM authz_audit ORDER BY id').all();
      } finally {
        db.close();
      }
    };
    try {
      const admin = connect({ config: node.clientConfigPath, env: {}, timeoutMs: 10_000 });
      clients.push(admin);
      await admin.authz.allow('nova', 'aurae.authz.v0.AuthzService/GetPolicy');
      const viewerCert = await node.issueClient('viewer');
      const viewerConfig = join(node.dir, 'viewer.json');
      writeFileSync(viewerConfig, JSON.stringify({ version: 1, node: node.nodeName, address: `unix://${node.socket}`, ca: node.pki.caCert, cert: viewerCert.cert, key: viewerCert.key }));
      const viewer = connect({ config: viewerConfig, env: {}, timeoutMs: 10_000 });
      clients.push(viewer);
      for (let i = 0; i < 3; i++) {
        const err = await viewer.node.reboot().then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(AuraeApiError);
        expect((err as AuraeApiError).code).toBe('PERMISSION_DENIED');
      }
      // Read by another connection while auraed runs: the accepted edit is there, the refusals still wait.
      expect(rows()).toEqual([{ identity: 'admin', method: 'aurae.authz.v0.AuthzService/Allow', code: 'OK', count: 1 }]);
    } finally {
      await auraed.stop(2000);
    }
    expect(rows()).toEqual([
      { identity: 'admin', method: 'aurae.authz.v0.AuthzService/Allow', code: 'OK', count: 1 },
      { identity: 'viewer', method: 'aurae.node.v0.NodeService/Reboot', code: 'PERMISSION_DENIED', count: 3 },
    ]);
  }, 60_000);
});
