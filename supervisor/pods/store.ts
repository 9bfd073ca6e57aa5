// The pods' desired state in SQLite: one row per pod (its spec, whether it should run, the image digest each
// container was created from), one per container (whether it should run: 'created' never started, 'running',
// 'stopped'; when it was created, last started and last finished) and the pod's address in the pod network. What
// the containers are doing is the cells' executables table (a pod is a cell).
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
  {
    version: 3,
    description: 'pod containers',
    up(db) {
      // Containers created one by one (the CRI) may be created and never started, or stopped alone: their desired
      // state is per container. Existing pods' containers take the pod's.
      db.exec(`
        CREATE TABLE pod_containers (
          pod TEXT NOT NULL REFERENCES pods(name) ON DELETE CASCADE,
          name TEXT NOT NULL,
          desired TEXT NOT NULL CHECK (desired IN ('created', 'running', 'stopped')),
          created_at INTEGER NOT NULL,
          started_at INTEGER,
          finished_at INTEGER,
          PRIMARY KEY (pod, name)
        );
      `);
      const insert = db.prepare('INSERT INTO pod_containers (pod, name, desired, created_at) VALUES (?, ?, ?, ?)');
      for (const row of db.prepare('SELECT name, spec, desired, created_at FROM pods').all() as { name: string; spec: string; desired: string; created_at: number }[]) {
        const spec = JSON.parse(row.spec) as { containers?: { name: string }[] };
        for (const c of spec.containers ?? []) insert.run(row.name, c.name, row.desired, row.created_at);
      }
    },
  },
];

/** A container's desired state: 'created' (never started), 'running' (start it, keep it under the pod's policy), 'stopped'. */
export type ContainerDesired = 'created' | 'running' | 'stopped';

export interface StoredContainer {
  desired: ContainerDesired;
  /** ms since the epoch. */
  createdAt: number;
  /** When crun last started it (ms since the epoch), null: never. */
  startedAt: number | null;
  /** When it last ended (ms since the epoch), null: not yet. */
  finishedAt: number | null;
}

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
  /** Insert a pod, with its containers' rows (in one transaction). */
  insert(pod: StoredPod, containers?: Record<string, StoredContainer>): void;
  setDesired(name: string, running: boolean): void;
  /** Delete the pod's row, its containers' rows and its address. */
  delete(name: string): void;
  /** Pod → container → its row (a container without one was stored before version 3 or by the VM sandbox). */
  containers(): Map<string, Map<string, StoredContainer>>;
  /** Insert or replace a container's row; with `pod`, also the pod's spec and digests (one transaction). */
  putContainer(pod: string, name: string, c: StoredContainer, podUpdate?: { spec: PodSpec; images: Record<string, string> }): void;
  /** Delete a container's row and replace the pod's spec and digests (one transaction). */
  deleteContainer(pod: string, name: string, podUpdate: { spec: PodSpec; images: Record<string, string> }): void;
  /** Pod → its address in the pod network. */
  addresses(): Map<string, string>;
  /** Record (or change) the pod's address. */
  setAddress(name: string, address: string): void;
}

interface ContainerRow {
  pod: string;
  name: string;
  desired: ContainerDesired;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
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
    containers: db.prepare('SELECT pod, name, desired, created_at, started_at, finished_at FROM pod_containers ORDER BY pod, name'),
    putContainer: db.prepare(
      `INSERT INTO pod_containers (pod, name, desired, created_at, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (pod, name) DO UPDATE SET desired = excluded.desired, created_at = excluded.created_at, started_at = excluded.started_at, finished_at = excluded.finished_at`,
    ),
    deleteContainer: db.prepare('DELETE FROM pod_containers WHERE pod = ? AND name = ?'),
    deleteContainers: db.prepare('DELETE FROM pod_containers WHERE pod = ?'),
    update: db.prepare('UPDATE pods SET spec = ?, images = ? WHERE name = ?'),
  };
  const putContainer = (pod: string, name: string, c: StoredContainer) => void q.putContainer.run(pod, name, c.desired, c.createdAt, c.startedAt, c.finishedAt);
  const remove = db.transaction((name: string) => {
    q.deleteAddress.run(name);
    q.deleteContainers.run(name);
    q.delete.run(name);
  });
  const insert = db.transaction((p: StoredPod, containers: Record<string, StoredContainer>) => {
    q.insert.run(p.spec.name, JSON.stringify(p.spec), p.desiredRunning ? 'running' : 'stopped', JSON.stringify(p.images), p.createdAt);
    for (const [name, c] of Object.entries(containers)) putContainer(p.spec.name, name, c);
  });
  const update = (pod: string, u: { spec: PodSpec; images: Record<string, string> }) => {
    const r = q.update.run(JSON.stringify(u.spec), JSON.stringify(u.images), pod);
    if (r.changes !== 1) throw new Error(`pod "${pod}" is not stored`);
  };
  const put = db.transaction((pod: string, name: string, c: StoredContainer, u?: { spec: PodSpec; images: Record<string, string> }) => {
    if (u) update(pod, u);
    putContainer(pod, name, c);
  });
  const drop = db.transaction((pod: string, name: string, u: { spec: PodSpec; images: Record<string, string> }) => {
    update(pod, u);
    q.deleteContainer.run(pod, name);
  });
  return {
    pods: () =>
      (q.pods.all() as PodRow[]).map((r) => ({
        spec: JSON.parse(r.spec) as PodSpec,
        desiredRunning: r.desired === 'running',
        images: JSON.parse(r.images) as Record<string, string>,
        createdAt: r.created_at,
      })),
    insert: (p, containers = {}) => void insert(p, containers),
    setDesired: (name, running) => void q.setDesired.run(running ? 'running' : 'stopped', name),
    delete: (name) => void remove(name),
    addresses: () => new Map((q.addresses.all() as { pod: string; address: string }[]).map((r) => [r.pod, r.address])),
    setAddress: (name, address) => void q.setAddress.run(name, address),
    containers() {
      const out = new Map<string, Map<string, StoredContainer>>();
      for (const r of q.containers.all() as ContainerRow[]) {
        if (!out.has(r.pod)) out.set(r.pod, new Map());
        out.get(r.pod)!.set(r.name, { desired: r.desired, createdAt: r.created_at, startedAt: r.started_at, finishedAt: r.finished_at });
      }
      return out;
    },
    putContainer: (pod, name, c, u) => void put(pod, name, c, u),
    deleteContainer: (pod, name, u) => void drop(pod, name, u),
  };
}

/** A store that keeps nothing across restarts (tests). */
export function memoryPodStore(): PodStore {
  const pods = new Map<string, StoredPod>();
  const addresses = new Map<string, string>();
  const containers = new Map<string, Map<string, StoredContainer>>();
  const update = (pod: string, u: { spec: PodSpec; images: Record<string, string> }) => {
    const p = pods.get(pod);
    if (!p) throw new Error(`pod "${pod}" is not stored`);
    p.spec = structuredClone(u.spec);
    p.images = { ...u.images };
  };
  return {
    pods: () => [...pods.values()].map((p) => structuredClone(p)).sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1)),
    insert(p, rows = {}) {
      if (pods.has(p.spec.name)) throw new Error(`UNIQUE constraint failed: pods.name (${p.spec.name})`);
      pods.set(p.spec.name, structuredClone(p));
      containers.set(p.spec.name, new Map(Object.entries(structuredClone(rows))));
    },
    setDesired(name, running) {
      const p = pods.get(name);
      if (p) p.desiredRunning = running;
    },
    delete(name) {
      pods.delete(name);
      addresses.delete(name);
      containers.delete(name);
    },
    containers: () => new Map([...containers].filter(([, m]) => m.size > 0).map(([pod, m]) => [pod, new Map([...m].map(([n, c]) => [n, { ...c }]))])),
    putContainer(pod, name, c, u) {
      if (!pods.has(pod)) throw new Error(`FOREIGN KEY constraint failed: pod_containers.pod (${pod})`);
      if (u) update(pod, u);
      if (!containers.has(pod)) containers.set(pod, new Map());
      containers.get(pod)!.set(name, { ...c });
    },
    deleteContainer(pod, name, u) {
      update(pod, u);
      containers.get(pod)?.delete(name);
    },
    addresses: () => new Map(addresses),
    setAddress(name, address) {
      for (const [other, a] of addresses) if (a === address && other !== name) throw new Error(`UNIQUE constraint failed: pod_addresses.address (${address})`);
      addresses.set(name, address);
    },
  };
}
