// What the CRI knows that the pods runtime does not: the ids kubelet uses (64 hex) ↔ the aurae pod and container
// names they map to, and each sandbox's and container's CRI metadata (name, uid, namespace, attempt), labels,
// annotations, runtime handler, log paths, image as asked and as resolved, creation time. SQLite, through the same
// versioned migrations as every subsystem (store/). What the containers do is the pods runtime's, never kept here.
import { type Db, type Migration, migrate } from '../store';

export const CRI_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'cri sandboxes and containers',
    up(db) {
      db.exec(`
        CREATE TABLE cri_sandboxes (
          id TEXT PRIMARY KEY,
          pod TEXT NOT NULL UNIQUE,
          name TEXT NOT NULL,
          uid TEXT NOT NULL,
          namespace TEXT NOT NULL,
          attempt INTEGER NOT NULL,
          labels TEXT NOT NULL,
          annotations TEXT NOT NULL,
          runtime_handler TEXT NOT NULL,
          log_directory TEXT NOT NULL,
          ready INTEGER NOT NULL,
          extra TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          UNIQUE (name, namespace, uid, attempt)
        );
        CREATE TABLE cri_containers (
          id TEXT PRIMARY KEY,
          sandbox_id TEXT NOT NULL REFERENCES cri_sandboxes(id) ON DELETE CASCADE,
          container TEXT NOT NULL,
          name TEXT NOT NULL,
          attempt INTEGER NOT NULL,
          labels TEXT NOT NULL,
          annotations TEXT NOT NULL,
          image TEXT NOT NULL,
          image_id TEXT NOT NULL,
          image_ref TEXT NOT NULL,
          log_path TEXT NOT NULL,
          extra TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          UNIQUE (sandbox_id, name, attempt),
          UNIQUE (sandbox_id, container)
        );
      `);
    },
  },
  {
    version: 2,
    description: 'cri container start time',
    up(db) {
      // When StartContainer handed it to the pods runtime: a container started once is never "created" again.
      db.exec('ALTER TABLE cri_containers ADD COLUMN started_at INTEGER');
    },
  },
];

/** Sandbox facts kept for status and verbose info (JSON). */
export interface SandboxExtra {
  hostname: string;
  /** Namespace modes asked at the sandbox level (CRI NamespaceMode names: POD, CONTAINER, NODE). */
  namespaces: { network: 'POD' | 'NODE'; pid: 'POD' | 'CONTAINER' | 'NODE'; ipc: 'POD' | 'NODE' };
  /** kubelet's cgroup parent (not used: the pod is a cell of auraed's tree; kept for verbose info). */
  cgroupParent: string;
  /** Pod-level sysctls (applied to each container: they are the pod's namespaces'). */
  sysctls: Record<string, string>;
  /** The port mappings published (node port → pod port). */
  portMappings: { nodePort: number; podPort: number; protocol: 'tcp' | 'udp' }[];
}

export interface CriSandboxRecord {
  /** 64 lowercase hex. */
  id: string;
  /** The aurae pod (`k8s-<12 hex>`). */
  pod: string;
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** As asked ("", "cell" or "vm"): PodSandbox.runtime_handler echoes it. */
  runtimeHandler: string;
  logDirectory: string;
  /** false after StopPodSandbox (SANDBOX_NOTREADY). */
  ready: boolean;
  extra: SandboxExtra;
  /** ms since the epoch. */
  createdAt: number;
}

/** Container facts kept for status (JSON). */
export interface ContainerExtra {
  /** The mounts as asked (ContainerStatus.mounts echoes them). */
  mounts: { containerPath: string; hostPath: string; readonly: boolean; propagation: number }[];
  /** uid/gid/groups asked, when numeric (ContainerStatus.user). */
  user: { uid: number; gid: number; supplementalGroups: number[] } | null;
  /** config.tty / stdin / stdin_once (Attach); absent: neither. */
  stdio?: { tty: boolean; stdin: boolean; stdinOnce: boolean };
}

export interface CriContainerRecord {
  id: string;
  sandboxId: string;
  /** The container's name in the aurae pod (`c-<12 hex>`). */
  container: string;
  name: string;
  attempt: number;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** ImageSpec.image as kubelet gave it. */
  image: string;
  /** The CRI image id (config digest). */
  imageId: string;
  /** `name@sha256:…` of the manifest the container was created from. */
  imageRef: string;
  /** Absolute path of its CRI log file ('' when kubelet gave none). */
  logPath: string;
  extra: ContainerExtra;
  createdAt: number;
  /** When StartContainer succeeded (ms); null: never started. */
  startedAt: number | null;
}

export interface CriStore {
  sandboxes(): CriSandboxRecord[];
  insertSandbox(record: CriSandboxRecord): void;
  setReady(id: string, ready: boolean): void;
  /** Deletes its containers too. */
  deleteSandbox(id: string): void;
  containers(): CriContainerRecord[];
  insertContainer(record: CriContainerRecord): void;
  setStarted(id: string, at: number): void;
  deleteContainer(id: string): void;
}

interface SandboxRow {
  id: string;
  pod: string;
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
  labels: string;
  annotations: string;
  runtime_handler: string;
  log_directory: string;
  ready: number;
  extra: string;
  created_at: number;
}

interface ContainerRow {
  id: string;
  sandbox_id: string;
  container: string;
  name: string;
  attempt: number;
  labels: string;
  annotations: string;
  image: string;
  image_id: string;
  image_ref: string;
  log_path: string;
  extra: string;
  created_at: number;
  started_at: number | null;
}

/** Unique-constraint failures as the caller's ALREADY_EXISTS (the message names the metadata). */
export class CriStoreConflict extends Error {}

function conflict(err: unknown): never {
  if (err instanceof Error && /UNIQUE constraint failed/.test(err.message)) throw new CriStoreConflict(err.message);
  throw err;
}

/** The SQLite store; runs the cri migrations on `db` first. */
export function sqliteCriStore(db: Db): CriStore {
  migrate(db, 'cri', CRI_MIGRATIONS);
  const q = {
    sandboxes: db.prepare('SELECT * FROM cri_sandboxes ORDER BY created_at, id'),
    insertSandbox: db.prepare(
      `INSERT INTO cri_sandboxes (id, pod, name, uid, namespace, attempt, labels, annotations, runtime_handler, log_directory, ready, extra, created_at)
       VALUES (@id, @pod, @name, @uid, @namespace, @attempt, @labels, @annotations, @runtime_handler, @log_directory, @ready, @extra, @created_at)`,
    ),
    setReady: db.prepare('UPDATE cri_sandboxes SET ready = ? WHERE id = ?'),
    deleteSandbox: db.prepare('DELETE FROM cri_sandboxes WHERE id = ?'),
    deleteContainersOf: db.prepare('DELETE FROM cri_containers WHERE sandbox_id = ?'),
    containers: db.prepare('SELECT * FROM cri_containers ORDER BY created_at, id'),
    insertContainer: db.prepare(
      `INSERT INTO cri_containers (id, sandbox_id, container, name, attempt, labels, annotations, image, image_id, image_ref, log_path, extra, created_at)
       VALUES (@id, @sandbox_id, @container, @name, @attempt, @labels, @annotations, @image, @image_id, @image_ref, @log_path, @extra, @created_at)`,
    ),
    deleteContainer: db.prepare('DELETE FROM cri_containers WHERE id = ?'),
    setStarted: db.prepare('UPDATE cri_containers SET started_at = ? WHERE id = ?'),
  };
  const removeSandbox = db.transaction((id: string) => {
    q.deleteContainersOf.run(id);
    q.deleteSandbox.run(id);
  });
  return {
    sandboxes: () =>
      (q.sandboxes.all() as SandboxRow[]).map((r) => ({
        id: r.id,
        pod: r.pod,
        name: r.name,
        uid: r.uid,
        namespace: r.namespace,
        attempt: r.attempt,
        labels: JSON.parse(r.labels) as Record<string, string>,
        annotations: JSON.parse(r.annotations) as Record<string, string>,
        runtimeHandler: r.runtime_handler,
        logDirectory: r.log_directory,
        ready: r.ready === 1,
        extra: JSON.parse(r.extra) as SandboxExtra,
        createdAt: r.created_at,
      })),
    insertSandbox(s) {
      try {
        q.insertSandbox.run({
          id: s.id,
          pod: s.pod,
          name: s.name,
          uid: s.uid,
          namespace: s.namespace,
          attempt: s.attempt,
          labels: JSON.stringify(s.labels),
          annotations: JSON.stringify(s.annotations),
          runtime_handler: s.runtimeHandler,
          log_directory: s.logDirectory,
          ready: s.ready ? 1 : 0,
          extra: JSON.stringify(s.extra),
          created_at: s.createdAt,
        });
      } catch (err) {
        conflict(err);
      }
    },
    setReady: (id, ready) => void q.setReady.run(ready ? 1 : 0, id),
    deleteSandbox: (id) => void removeSandbox(id),
    containers: () =>
      (q.containers.all() as ContainerRow[]).map((r) => ({
        id: r.id,
        sandboxId: r.sandbox_id,
        container: r.container,
        name: r.name,
        attempt: r.attempt,
        labels: JSON.parse(r.labels) as Record<string, string>,
        annotations: JSON.parse(r.annotations) as Record<string, string>,
        image: r.image,
        imageId: r.image_id,
        imageRef: r.image_ref,
        logPath: r.log_path,
        extra: JSON.parse(r.extra) as ContainerExtra,
        createdAt: r.created_at,
        startedAt: r.started_at ?? null,
      })),
    insertContainer(c) {
      try {
        q.insertContainer.run({
          id: c.id,
          sandbox_id: c.sandboxId,
          container: c.container,
          name: c.name,
          attempt: c.attempt,
          labels: JSON.stringify(c.labels),
          annotations: JSON.stringify(c.annotations),
          image: c.image,
          image_id: c.imageId,
          image_ref: c.imageRef,
          log_path: c.logPath,
          extra: JSON.stringify(c.extra),
          created_at: c.createdAt,
        });
      } catch (err) {
        conflict(err);
      }
    },
    setStarted: (id, at) => void q.setStarted.run(at, id),
    deleteContainer: (id) => void q.deleteContainer.run(id),
  };
}
