// Test bed for the trust tests (trust.test.ts, renewal.test.ts): a scratch folder, the servers and clients a test
// file starts (closed after it), and the build host's PKI as ensurePki makes it. Not part of any bundle.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@grpc/grpc-js';
import { afterAll } from 'vitest';
import { type CertificateAuthority, ensurePki } from '../supervisor/pki';
import type { RunningServer } from '../supervisor/server';

export interface TrustBed {
  scratch: string;
  servers: RunningServer[];
  clients: Client[];
}

/** A scratch folder named `prefix…`; every server and client pushed onto the bed is closed after the file. */
export function useTrustBed(prefix: string): TrustBed {
  const bed: TrustBed = { scratch: mkdtempSync(join(tmpdir(), prefix)), servers: [], clients: [] };
  afterAll(async () => {
    for (const c of bed.clients) c.close();
    for (const s of bed.servers) await s.shutdown(500);
    rmSync(bed.scratch, { recursive: true, force: true });
  });
  return bed;
}

export interface HostPki {
  root: CertificateAuthority;
  rootSpawnCa: CertificateAuthority;
  node: { certPem: string; keyPem: string };
  admin: { certPem: string; keyPem: string };
}

/** The root node's PKI (root CA, spawn CA, node and admin certificates) made in `dir` by ensurePki. */
export async function hostPki(dir: string): Promise<HostPki> {
  const { files } = await ensurePki(dir, { nodeName: 'aurae' });
  const read = (path: string) => readFileSync(path, 'utf8');
  return {
    root: { certPem: read(files.caCert), keyPem: read(files.caKey) },
    rootSpawnCa: { certPem: read(files.spawnCaCert), keyPem: read(files.spawnCaKey) },
    node: { certPem: read(files.nodeCert), keyPem: read(files.nodeKey) },
    admin: { certPem: read(files.adminCert), keyPem: read(files.adminKey) },
  };
}
