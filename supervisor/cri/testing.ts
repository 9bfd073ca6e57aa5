// Test helpers: an in-memory Images (the part the CRI uses) and a grpc-js client of both CRI services on a socket.
import { credentials, type Client, Metadata, type ServiceError } from '@grpc/grpc-js';
import { AuraeError } from '../errors';
import { ImageServiceClient, RuntimeServiceClient } from '../gen/runtime/v1/api';
import { type ImageRecord, type Images, type PullOptions, parseReference } from '../images';

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
