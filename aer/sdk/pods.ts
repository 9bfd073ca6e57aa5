// client.pods (aurae.pods.v0.PodService) and the seeds' builders:
//
//   const helloContainer = container().image('busybox');
//   const helloPod = pod().env('key', 'value').expose(80).add(helloContainer);
//   await aurae.runtime().run(helloPod);
//
// Builders only collect a PodSpec (plain data, also accepted by pods.run); auraed validates it and names the
// field it refuses. `expose(80)` publishes the pod's port 80 on the node's port 80 (tcp); `publish(8080, 80)`
// maps another node port, `publish(53, 53, 'udp')` a UDP one. A pod gets its own address (PodInfo.ip).
import { randomBytes } from 'node:crypto';
import { Metadata } from '@grpc/grpc-js';
import {
  type Container as ProtoContainer,
  type ContainerStatus as ProtoContainerStatus,
  type Pod as ProtoPod,
  PodServiceClient,
  type PodServiceInspectResponse,
  type PodServiceListResponse,
  type PodServiceRunResponse,
  type PodServiceStopResponse,
  type PodStatus as ProtoPodStatus,
} from '../../supervisor/gen/aurae/pods/v0/pods';
import type { SdkCallContext } from './call-context';
import { type ExecOptions, type ExecResult, type ExecSession, type ExecStartOptions, execCollect, execStream } from './pod-exec';
import { type PullProgress, type RegistryAuth, consumeStream, fromProtoProgress, toProtoAuth } from './images';
import { fromWireInt, fromWireInts, toWireInts } from './int64';

const SERVICE = 'aurae.pods.v0.PodService';

export type PodRestart = 'never' | 'on-failure' | 'always';

/** One container of a pod: an image, and what of its config to override. */
export interface ContainerSpec {
  /** DNS label, unique in the pod. */
  name: string;
  /** Image reference, e.g. "busybox" or "127.0.0.1:5000/app:1.0" (pulled when the node does not have it). */
  image: string;
  /** Replaces the image's Entrypoint. */
  command?: string[];
  /** Replaces the image's Cmd. */
  args?: string[];
  env?: Record<string, string>;
  workingDir?: string;
  /** "uid", "uid:gid", "name" or "name:group". */
  user?: string;
  readOnlyRootfs?: boolean;
}

export interface PodSpec {
  /** DNS label. */
  name: string;
  /** "cell" (default); "vm" is not implemented yet. */
  sandbox?: 'cell' | 'vm';
  containers: ContainerSpec[];
  /** For every container (a container's own env wins). */
  env?: Record<string, string>;
  restart?: PodRestart;
  limits?: { memoryMax?: number; pidsMax?: number; cpuWeight?: number };
  /** Ports the containers listen on; each is published on the same node port (tcp) unless `publish` maps it. */
  expose?: number[];
  /** Node ports mapped to the pod's ports (DNAT on the node). */
  publish?: PortPublish[];
}

export interface PortPublish {
  nodePort: number;
  podPort: number;
  /** Default "tcp". */
  protocol?: 'tcp' | 'udp';
}

export interface ContainerInfo {
  name: string;
  image: string;
  imageDigest: string;
  state: 'pulling' | 'created' | 'running' | 'exited' | 'failed' | 'unknown';
  pid: number | null;
  exit: { code: number | null; signal: string | null; oomKilled: boolean } | null;
  restarts: number;
}

export interface PodInfo {
  name: string;
  sandbox: string;
  state: 'pending' | 'running' | 'succeeded' | 'failed' | 'stopped' | 'unknown';
  containers: ContainerInfo[];
  /** ms since the Unix epoch. */
  createdAt: number;
  /** The pod as requested (null when the node does not report it). */
  spec: PodSpec | null;
  /** The pod's IPv4 address in the node's pod network; null when it has none. */
  ip: string | null;
}

/** Pull progress of one of the pod's images. */
export interface PodPullProgress extends PullProgress {
  image: string;
}

export interface RunOptions {
  /** Credentials for pulling the pod's images (this run only). */
  auth?: RegistryAuth;
  onProgress?(progress: PodPullProgress): void;
  signal?: AbortSignal;
}

export interface PodsApi {
  /** Pull what is missing, start every container; resolves with the pod's status once they started. */
  run(pod: PodSpec | PodBuilder, options?: RunOptions): Promise<PodInfo>;
  list(): Promise<PodInfo[]>;
  inspect(name: string): Promise<PodInfo>;
  /** Stop signal, then SIGKILL after graceMs (default 10 s). The pod stays, stopped. */
  stop(name: string, options?: { graceMs?: number }): Promise<PodInfo>;
  /** force: kill running containers first. */
  remove(name: string, options?: { force?: boolean }): Promise<void>;
  /** Run `command` in a running container of `pod` to its end: its exit and its collected output (pod-exec.ts). */
  exec(pod: string, command: string[], options?: ExecOptions): Promise<ExecResult>;
  /** The same with the streams: stdin (with stdin: true), stdout, stderr, and the exit (pod-exec.ts). */
  execStream(pod: string, command: string[], options?: ExecStartOptions & { stdin?: boolean }): ExecSession;
}

/** The seeds' `auae.runtime()`: what runs pods. */
export interface PodRuntimeApi {
  run(pod: PodSpec | PodBuilder, options?: RunOptions): Promise<PodInfo>;
}

// ---- builders ------------------------------------------------------------------------------------------------

/** A container being described; every setter returns the builder (chain, or call one per statement). */
export class ContainerBuilder {
  private readonly spec: Partial<ContainerSpec> & { env: Record<string, string> } = { env: {} };

  constructor(name?: string) {
    if (name !== undefined) this.spec.name = name;
  }

  name(name: string): this {
    this.spec.name = name;
    return this;
  }
  image(reference: string): this {
    this.spec.image = reference;
    return this;
  }
  /** Replace the image's Entrypoint. */
  command(...argv: string[]): this {
    this.spec.command = argv;
    return this;
  }
  /** Replace the image's Cmd. */
  args(...argv: string[]): this {
    this.spec.args = argv;
    return this;
  }
  env(name: string, value: string): this {
    this.spec.env[name] = value;
    return this;
  }
  workingDir(dir: string): this {
    this.spec.workingDir = dir;
    return this;
  }
  user(user: string): this {
    this.spec.user = user;
    return this;
  }
  readOnlyRootfs(on = true): this {
    this.spec.readOnlyRootfs = on;
    return this;
  }

  /** The spec; without a name, one derived from the image ("127.0.0.1:5000/team/web:1" → "web"). */
  build(): ContainerSpec {
    const image = this.spec.image;
    if (!image) throw new Error('container(): no image: call .image("busybox") (or another reference) first');
    const { env, ...rest } = this.spec;
    return { ...rest, name: this.spec.name ?? nameFromImage(image), image, ...(Object.keys(env).length ? { env: { ...env } } : {}) };
  }
}

/** A pod being described; `add` takes containers, every setter returns the builder. */
export class PodBuilder {
  private podName: string | undefined;
  private readonly containers: ContainerBuilder[] = [];
  private readonly podEnv: Record<string, string> = {};
  private readonly ports: number[] = [];
  private readonly published: PortPublish[] = [];
  private restartPolicy: PodRestart | undefined;
  private sandboxKind: 'cell' | 'vm' | undefined;
  private readonly podLimits: NonNullable<PodSpec['limits']> = {};

  constructor(name?: string) {
    this.podName = name;
  }

  name(name: string): this {
    this.podName = name;
    return this;
  }
  add(...containers: (ContainerBuilder | ContainerSpec)[]): this {
    for (const c of containers) this.containers.push(c instanceof ContainerBuilder ? c : fromSpec(c));
    return this;
  }
  env(name: string, value: string): this {
    this.podEnv[name] = value;
    return this;
  }
  /** A port the pod's containers listen on, published on the same node port (tcp). */
  expose(port: number): this {
    if (!this.ports.includes(port)) this.ports.push(port);
    return this;
  }
  /** Map node port `nodePort` to the pod's `podPort` (default the same port). */
  publish(nodePort: number, podPort: number = nodePort, protocol: 'tcp' | 'udp' = 'tcp'): this {
    const at = this.published.findIndex((p) => p.nodePort === nodePort && (p.protocol ?? 'tcp') === protocol);
    if (at >= 0) this.published.splice(at, 1);
    this.published.push({ nodePort, podPort, protocol });
    return this;
  }
  restart(policy: PodRestart): this {
    this.restartPolicy = policy;
    return this;
  }
  /** "cell" (the node's default: namespaces + a cell) or "vm" (a child microVM booted from the node's image). */
  sandbox(kind: 'cell' | 'vm'): this {
    this.sandboxKind = kind;
    return this;
  }
  /** memory.max of the pod's cell, in bytes. */
  memory(bytes: number): this {
    this.podLimits.memoryMax = bytes;
    return this;
  }
  pids(max: number): this {
    this.podLimits.pidsMax = max;
    return this;
  }
  cpuWeight(weight: number): this {
    this.podLimits.cpuWeight = weight;
    return this;
  }

  /**
   * The spec. Without a name the pod gets "pod-" and 6 random hex digits; unnamed containers are named after
   * their images, with "-2", "-3"… when two would clash.
   */
  build(): PodSpec {
    if (this.containers.length === 0) throw new Error('pod(): no container: add one with .add(container().image("busybox"))');
    const taken = new Set<string>();
    const containers = this.containers.map((builder) => {
      const spec = builder.build();
      let name = spec.name;
      for (let n = 2; taken.has(name); n++) name = `${spec.name.slice(0, 60)}-${n}`;
      taken.add(name);
      return { ...spec, name };
    });
    return {
      name: this.podName ?? `pod-${randomBytes(3).toString('hex')}`,
      containers,
      ...(Object.keys(this.podEnv).length ? { env: { ...this.podEnv } } : {}),
      ...(this.ports.length ? { expose: [...this.ports] } : {}),
      ...(this.published.length ? { publish: this.published.map((p) => ({ ...p })) } : {}),
      ...(this.restartPolicy ? { restart: this.restartPolicy } : {}),
      ...(this.sandboxKind ? { sandbox: this.sandboxKind } : {}),
      ...(Object.keys(this.podLimits).length ? { limits: { ...this.podLimits } } : {}),
    };
  }
}

/** The seeds' `container()`. */
export function container(name?: string): ContainerBuilder {
  return new ContainerBuilder(name);
}

/** The seeds' `pod()`. */
export function pod(name?: string): PodBuilder {
  return new PodBuilder(name);
}

function fromSpec(spec: ContainerSpec): ContainerBuilder {
  const b = new ContainerBuilder(spec.name).image(spec.image);
  if (spec.command) b.command(...spec.command);
  if (spec.args) b.args(...spec.args);
  for (const [k, v] of Object.entries(spec.env ?? {})) b.env(k, v);
  if (spec.workingDir !== undefined) b.workingDir(spec.workingDir);
  if (spec.user !== undefined) b.user(spec.user);
  if (spec.readOnlyRootfs) b.readOnlyRootfs();
  return b;
}

/** A DNS label from an image reference's last path component ("docker.io/library/busybox:1.36" → "busybox"). */
export function nameFromImage(reference: string): string {
  const path = reference.split('@')[0]!;
  const last = path.slice(path.lastIndexOf('/') + 1).replace(/:[^:]*$/, '');
  const label = last.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '');
  return label || 'app';
}

// ---- wire mapping --------------------------------------------------------------------------------------------

export function toProtoPod(spec: PodSpec): ProtoPod {
  return {
    name: spec.name,
    sandbox: spec.sandbox ?? '',
    containers: spec.containers.map(
      (c): ProtoContainer => ({
        name: c.name,
        image: c.image,
        command: c.command ?? [],
        args: c.args ?? [],
        env: c.env ?? {},
        workingDir: c.workingDir ?? '',
        user: c.user ?? '',
        readOnlyRootfs: c.readOnlyRootfs ?? false,
      }),
    ),
    env: spec.env ?? {},
    restart: spec.restart ?? '',
    limits: spec.limits ? toWireInts('limits', spec.limits) : undefined,
    expose: spec.expose ?? [],
    publish: (spec.publish ?? []).map((p) => ({ nodePort: p.nodePort, podPort: p.podPort, protocol: p.protocol ?? '' })),
  };
}

export function fromProtoPod(p: ProtoPod): PodSpec {
  const limits = p.limits ? fromWireInts(p.limits) : {};
  return {
    name: p.name,
    ...(p.sandbox === 'cell' || p.sandbox === 'vm' ? { sandbox: p.sandbox } : {}),
    containers: p.containers.map((c) => ({
      name: c.name,
      image: c.image,
      ...(c.command.length ? { command: c.command } : {}),
      ...(c.args.length ? { args: c.args } : {}),
      ...(Object.keys(c.env).length ? { env: c.env } : {}),
      ...(c.workingDir ? { workingDir: c.workingDir } : {}),
      ...(c.user ? { user: c.user } : {}),
      ...(c.readOnlyRootfs ? { readOnlyRootfs: true } : {}),
    })),
    ...(Object.keys(p.env).length ? { env: p.env } : {}),
    ...(p.restart === 'never' || p.restart === 'on-failure' || p.restart === 'always' ? { restart: p.restart } : {}),
    ...(Object.keys(limits).length ? { limits: limits as PodSpec['limits'] } : {}),
    ...(p.expose.length ? { expose: p.expose } : {}),
    ...(p.publish?.length ? { publish: p.publish.map((x) => ({ nodePort: x.nodePort, podPort: x.podPort, protocol: x.protocol === 'udp' ? ('udp' as const) : ('tcp' as const) })) } : {}),
  };
}

const POD_STATES: readonly string[] = ['pending', 'running', 'succeeded', 'failed', 'stopped'];
const CONTAINER_STATES: readonly string[] = ['pulling', 'created', 'running', 'exited', 'failed'];

function fromProtoContainer(c: ProtoContainerStatus): ContainerInfo {
  return {
    name: c.name,
    image: c.image,
    imageDigest: c.imageDigest,
    state: CONTAINER_STATES.includes(c.state) ? (c.state as ContainerInfo['state']) : 'unknown',
    pid: c.pid || null,
    exit: c.exit ? { code: c.exit.code ?? null, signal: c.exit.signal ?? null, oomKilled: c.exit.oomKilled } : null,
    restarts: c.restarts,
  };
}

export function fromProtoPodStatus(s: ProtoPodStatus): PodInfo {
  return {
    name: s.name,
    sandbox: s.sandbox,
    state: POD_STATES.includes(s.state) ? (s.state as PodInfo['state']) : 'unknown',
    containers: s.containers.map(fromProtoContainer),
    createdAt: fromWireInt(s.createdAt),
    spec: s.spec ? fromProtoPod(s.spec) : null,
    ip: s.ip || null,
  };
}

export function createPodsApi(ctx: SdkCallContext): PodsApi {
  const client = new PodServiceClient(ctx.address, ctx.credentials, ctx.options);
  const name = (method: string) => `${SERVICE}/${method}`;
  const required = (r: { pod?: ProtoPodStatus }, pod: string) => {
    if (!r.pod) throw new Error(`pod ${pod}: the node returned no pod`);
    return fromProtoPodStatus(r.pod);
  };
  return {
    run: (podOrBuilder, options = {}) => {
      const spec = podOrBuilder instanceof PodBuilder ? podOrBuilder.build() : podOrBuilder;
      return consumeStream<PodServiceRunResponse, PodInfo>(
        ctx,
        name('Run'),
        () => client.run({ pod: toProtoPod(spec), auth: toProtoAuth(options.auth) }),
        (m) => {
          if (m.pull?.progress) options.onProgress?.({ image: m.pull.image, ...fromProtoProgress(m.pull.progress) });
          return m.status ? fromProtoPodStatus(m.status) : undefined;
        },
        options.signal,
      );
    },
    list: async () => {
      const r = await ctx.unary<PodServiceListResponse>(name('List'), (done) => client.list({}, new Metadata(), ctx.callOptions(), done));
      return r.pods.map(fromProtoPodStatus);
    },
    inspect: async (podName) => required(await ctx.unary<PodServiceInspectResponse>(name('Inspect'), (done) => client.inspect({ podName }, new Metadata(), ctx.callOptions(), done)), podName),
    stop: async (podName, options = {}) =>
      required(
        await ctx.unary<PodServiceStopResponse>(name('Stop'), (done) =>
          // Stop returns once the processes are gone: allow the grace period plus time for the kill.
          client.stop({ podName, gracePeriodMs: options.graceMs }, new Metadata(), { deadline: Date.now() + (options.graceMs ?? 10_000) + 15_000 }, done),
        ),
        podName,
      ),
    exec: (podName, command, options) => execCollect(client, ctx.address, podName, command, options),
    execStream: (podName, command, options) => execStream(client, ctx.address, podName, command, options),
    remove: async (podName, options = {}) => {
      await ctx.unary(name('Remove'), (done) => client.remove({ podName, force: options.force ?? false }, new Metadata(), { deadline: Date.now() + 30_000 }, done));
    },
  };
}
