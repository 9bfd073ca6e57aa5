// Test helpers: an in-memory Images (the part the CRI uses), an in-memory pods runtime (the incremental API the
// CRI maps onto) and a grpc-js client of both CRI services on a socket.
import { credentials, type Client, Metadata, type ServiceError } from '@grpc/grpc-js';
import { AuraeError } from '../errors';
import { ImageServiceClient, RuntimeServiceClient } from '../gen/runtime/v1/api';
import { type ImageRecord, type Images, type PullOptions, parseReference } from '../images';
import type { ContainerStatus, ExecTarget, PodStatus } from '../pods';
import type { CriPods } from './pods-contract';

export type FakeImages = Pick<Images, 'pull' | 'list' | 'get' | 'remove'> & {
  records: ImageRecord[];
  pulls: { reference: string; opts: PullOptions | undefined }[];
  /** Digests retained (remove refuses the last name of one with FAILED_PRECONDITION). */
  inUse: Set<string>;
};

export function hex(c: string): string {
  return c.repeat(64).slice(0, 64);
}

export function record(partial: Partial<ImageRecord> & Pick<ImageRecord, 'name' | 'digest' | 'configDigest'>): ImageRecord {
  return {
    tags: ['latest'],
    config: { entrypoint: [], cmd: ['/bin/sh'], env: [], workingDir: '', user: '', exposedPorts: [], labels: {}, stopSignal: '' },
    layers: [{ digest: `sha256:${hex('f')}`, size: 1000, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: `sha256:${hex('e')}` }],
    size: 1000,
    pulledAt: 1_700_000_000_000,
    ...partial,
  };
}

/** Pulls come from `registry`: reference → the record a pull stores (by its familiar or canonical name). */
export function fakeImages(registry: Record<string, ImageRecord> = {}): FakeImages {
  const fake: FakeImages = {
    records: [],
    pulls: [],
    inUse: new Set(),
    async pull(reference, opts) {
      fake.pulls.push({ reference, opts });
      const parsed = parseReference(reference);
      const found = Object.entries(registry).find(([ref]) => {
        const p = parseReference(ref);
        return p.name === parsed.name && (parsed.digest ? parsed.digest === registry[ref]!.digest : p.tag === parsed.tag);
      });
      if (!found) throw new AuraeError('NOT_FOUND', `image ${reference} not found in the registry`);
      const stored = found[1];
      if (!fake.records.some((r) => r.name === stored.name && r.digest === stored.digest)) fake.records.push(stored);
      return stored;
    },
    list: () => [...fake.records],
    get(ref) {
      if (ref.startsWith('sha256:')) return fake.records.find((r) => r.digest === ref);
      const parsed = parseReference(ref);
      return fake.records.find((r) => r.name === parsed.name && (parsed.digest ? r.digest === parsed.digest : r.tags.includes(parsed.tag!)));
    },
    async remove(ref) {
      const parsed = parseReference(ref);
      const i = fake.records.findIndex((r) => r.name === parsed.name && r.digest === parsed.digest);
      if (i < 0) throw new AuraeError('NOT_FOUND', `image "${ref}" is not on this node`);
      const r = fake.records[i]!;
      const last = fake.records.filter((o) => o.digest === r.digest).length === 1;
      if (last && fake.inUse.has(r.digest)) throw new AuraeError('FAILED_PRECONDITION', `image ${ref} is in use by pod:web/app: remove those first`);
      fake.records.splice(i, 1);
      return { removed: [...r.tags.map((t) => `${r.name}:${t}`), `${r.name}@${r.digest}`] };
    },
  };
  return fake;
}

export interface CriClients {
  runtime: InstanceType<typeof RuntimeServiceClient>;
  images: InstanceType<typeof ImageServiceClient>;
  close(): void;
}

/** Plain-text clients on the unix socket, as kubelet connects. */
export function criClients(socket: string): CriClients {
  const address = `unix://${socket}`;
  const runtime = new RuntimeServiceClient(address, credentials.createInsecure());
  const images = new ImageServiceClient(address, credentials.createInsecure());
  return {
    runtime,
    images,
    close() {
      runtime.close();
      images.close();
    },
  };
}

type UnaryMethod<Req, Res> = (request: Req, metadata: Metadata, options: object, callback: (err: ServiceError | null, res: Res) => void) => unknown;

/** Call a generated unary method as a promise (with a deadline so a hang fails the test). */
export function call<Req, Res>(client: Client, method: UnaryMethod<Req, Res>, request: Req, timeoutMs = 30_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** A pods runtime in memory with the incremental API (CriPods), for the CRI's unit tests. */
export interface FakePods extends CriPods {
  pods: Map<string, PodStatus>;
  calls: string[];
  /** Make the container exit (as its executable would): code, signal, OOM. */
  exit(pod: string, container: string, exit: { code: number | null; signal?: string | null; oomKilled?: boolean }, at?: number): void;
  /** Fail the next call of this method with this error. */
  failNext: Map<string, Error>;
  /** Where execTarget points (tests write a config.json there). */
  execTargets: Map<string, ExecTarget>;
}

export function fakePods(clock: () => number = Date.now): FakePods {
  const pods = new Map<string, PodStatus>();
  const calls: string[] = [];
  const failNext = new Map<string, Error>();
  const execTargets = new Map<string, ExecTarget>();
  const check = (method: string, arg: string) => {
    calls.push(`${method} ${arg}`);
    const err = failNext.get(method);
    if (err) {
      failNext.delete(method);
      throw err;
    }
  };
  const pod = (name: string) => {
    const p = pods.get(name);
    if (!p) throw new AuraeError('NOT_FOUND', `pod "${name}" does not exist`);
    return p;
  };
  const container = (p: PodStatus, name: string) => {
    const c = p.containers.find((x) => x.name === name);
    if (!c) throw new AuraeError('NOT_FOUND', `pod "${p.name}" has no container "${name}"`);
    return c;
  };
  const fake: FakePods = {
    pods,
    calls,
    failNext,
    execTargets,
    list: () => [...pods.values()].map((p) => structuredClone(p)),
    get: (name) => (pods.has(name) ? structuredClone(pods.get(name)!) : undefined),
    async createSandbox(spec) {
      check('createSandbox', spec.name);
      if (pods.has(spec.name)) throw new AuraeError('ALREADY_EXISTS', `pod "${spec.name}" already exists`);
      const status: PodStatus = { name: spec.name, sandbox: spec.sandbox, state: 'running', containers: [], createdAt: clock(), spec, ip: '10.88.0.2' };
      pods.set(spec.name, status);
      return structuredClone(status);
    },
    async createContainer(podName, c) {
      check('createContainer', `${podName}/${c.name}`);
      const p = pod(podName);
      if (p.state === 'stopped') throw new AuraeError('FAILED_PRECONDITION', `pod "${podName}" is stopped`);
      const status: ContainerStatus = { name: c.name, image: c.image, imageDigest: c.image.split('@')[1] ?? '', state: 'created', pid: null, exit: null, restarts: 0, createdAt: clock(), startedAt: null, finishedAt: null };
      p.containers.push(status);
      p.spec = { ...p.spec, containers: [...p.spec.containers, c] };
      return structuredClone(status);
    },
    async startContainer(podName, name) {
      check('startContainer', `${podName}/${name}`);
      const c = container(pod(podName), name);
      if (c.state !== 'created') throw new AuraeError('FAILED_PRECONDITION', `container "${name}" is ${c.state}`);
      Object.assign(c, { state: 'running', pid: 4242, startedAt: clock() });
      return structuredClone(c);
    },
    async stopContainer(podName, name, graceMs) {
      check('stopContainer', `${podName}/${name} ${graceMs}`);
      const c = container(pod(podName), name);
      if (c.state === 'running') Object.assign(c, { state: 'exited', pid: null, exit: { code: 137, signal: null, oomKilled: false }, finishedAt: clock() });
      return structuredClone(c);
    },
    async removeContainer(podName, name, opts) {
      check('removeContainer', `${podName}/${name}${opts.force ? ' force' : ''}`);
      const p = pod(podName);
      container(p, name);
      p.containers = p.containers.filter((c) => c.name !== name);
      p.spec = { ...p.spec, containers: p.spec.containers.filter((c) => c.name !== name) };
    },
    async updateContainerResources(podName, name, resources) {
      check('updateContainerResources', `${podName}/${name} ${JSON.stringify(resources)}`);
      const p = pod(podName);
      const c = container(p, name);
      p.spec = { ...p.spec, containers: p.spec.containers.map((x) => (x.name === name ? { ...x, resources: { ...(x.resources ?? {}), ...resources } } : x)) };
      return structuredClone(c);
    },
    async stop(name, graceMs) {
      check('stop', `${name} ${graceMs}`);
      const p = pod(name);
      for (const c of p.containers) if (c.state === 'running') Object.assign(c, { state: 'exited', pid: null, exit: { code: 137, signal: null, oomKilled: false }, finishedAt: clock() });
      p.state = 'stopped';
      return structuredClone(p);
    },
    async remove(name, opts) {
      check('remove', `${name}${opts.force ? ' force' : ''}`);
      pod(name);
      pods.delete(name);
    },
    execTarget(podName, name) {
      const t = execTargets.get(`${podName}/${name}`);
      if (!t) throw new AuraeError('FAILED_PRECONDITION', `no exec target for ${podName}/${name}`);
      return t;
    },
    exit(podName, name, exit, at = clock()) {
      const c = container(pod(podName), name);
      Object.assign(c, { state: exit.code === 0 ? 'exited' : 'failed', pid: null, exit: { code: exit.code, signal: exit.signal ?? null, oomKilled: exit.oomKilled ?? false }, finishedAt: at });
    },
  };
  return fake;
}
