// The pods' desired state in SQLite: one row per pod (its spec, whether it should run, the image digest each
// container was created from) and its address in the pod network. What the containers are doing is the cells' executables table (a pod is a cell).
import { type Db, type Migration, migrate } from '../store';
import type { PodSpec } from './spec';

export const PODS_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'pods',
    up(db) {
      db.exec(`
        CREATE TABLE pods (
          name TEXT PRIMARY KEY,
          spec TEXT NOT NULL,
          desired TEXT NOT NULL CHECK (desired IN ('running', 'stopped')),
          images TEXT NOT NULL,
          created_at INTEGER NOT NULL
        );
      `);
    },
  },
  {
    version: 2,
    description: 'pod addresses',
    up(db) {
      // A pod's address in the node's pod network, held until the pod is removed (UNIQUE: never two pods on one).
      db.exec(`
        CREATE TABLE pod_addresses (
          pod TEXT PRIMARY KEY REFERENCES pods(name) ON DELETE CASCADE,
          address TEXT NOT NULL UNIQUE
        );
      `);
    },
  },
];

export interface StoredPod {
  spec: PodSpec;
  desiredRunning: boolean;
  /** Container name → the manifest digest its image resolved to at run. */
  images: Record<string, string>;
  /** ms since the epoch. */
  createdAt: number;
}

export interface PodStore {
  pods(): StoredPod[];
  insert(pod: StoredPod): void;
  setDesired(name: string, running: boolean): void;
  /** Delete the pod's row and its address. */
  delete(name: string): void;
  /** Pod → its address in the pod network. */
  addresses(): Map<string, string>;
  /** Record (or change) the pod's address. */
  setAddress(name: string, address: string): void;
}

interface PodRow {
  name: string;
  spec: string;
  desired: 'running' | 'stopped';
  images: string;
  created_at: number;
}

/** The SQLite store; runs the pods migrations on `db` first. */
export function sqlitePodStore(db: Db): PodStore {
  migrate(db, 'pods', PODS_MIGRATIONS);
  const q = {
    pods: db.prepare('SELECT name, spec, desired, images, created_at FROM pods ORDER BY name'),
    insert: db.prepare('INSERT INTO pods (name, spec, desired, images, created_at) VALUES (?, ?, ?, ?, ?)'),
    setDesired: db.prepare('UPDATE pods SET desired = ? WHERE name = ?'),
    delete: db.prepare('DELETE FROM pods WHERE name = ?'),
    deleteAddress: db.prepare('DELETE FROM pod_addresses WHERE pod = ?'),
    addresses: db.prepare('SELECT pod, address FROM pod_addresses'),
    setAddress: db.prepare('INSERT INTO pod_addresses (pod, address) VALUES (?, ?) ON CONFLICT (pod) DO UPDATE SET address = excluded.address'),
  };
  const remove = db.transaction((name: string) => {
    q.deleteAddress.run(name);
    q.delete.run(name);
  });
  return {
    pods: () =>
      (q.pods.all() as PodRow[]).map((r) => ({
        spec: JSON.parse(r.spec) as PodSpec,
        desiredRunning: r.desired === 'running',
        images: JSON.parse(r.images) as Record<string, string>,
        createdAt: r.created_at,
      })),
    insert: (p) => void q.insert.run(p.spec.name, JSON.stringify(p.spec), p.desiredRunning ? 'running' : 'stopped', JSON.stringify(p.images), p.createdAt),
    setDesired: (name, running) => void q.setDesired.run(running ? 'running' : 'stopped', name),
    delete: (name) => void remove(name),
    addresses: () => new Map((q.addresses.all() as { pod: string; address: string }[]).map((r) => [r.pod, r.address])),
    setAddress: (name, address) => void q.setAddress.run(name, address),
  };
}

/** A store that keeps nothing across restarts (tests). */
export function memoryPodStore(): PodStore {
  const pods = new Map<string, StoredPod>();
  const addresses = new Map<string, string>();
  return {
    pods: () => [...pods.values()].map((p) => structuredClone(p)).sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1)),
    insert(p) {
      if (pods.has(p.spec.name)) throw new Error(`UNIQUE constraint failed: pods.name (${p.spec.name})`);
      pods.set(p.spec.name, structuredClone(p));
    },
    setDesired(name, running) {
      const p = pods.get(name);
      if (p) p.desiredRunning = running;
    },
    delete(name) {
      pods.delete(name);
      addresses.delete(name);
    },
    addresses: () => new Map(addresses),
    setAddress(name, address) {
      for (const [other, a] of addresses) if (a === address && other !== name) throw new Error(`UNIQUE constraint failed: pod_addresses.address (${address})`);
      addresses.set(name, address);
    },
  };
}
