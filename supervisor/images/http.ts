// The HTTP adapter under the registry client: one request, no redirects followed, the body as a stream. The real
// one is undici's `request` with one Agent per CA set (system roots + a registry's own CA file); tests pass fakes.
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { Agent } from 'undici';
import { AuraeError } from '../errors';

export interface HttpRequest {
  method: 'GET' | 'HEAD';
  url: string;
  headers: Record<string, string>;
  signal?: AbortSignal;
  /** An extra CA file trusted for this request (HTTPS), besides the system roots. */
  caFile?: string | null;
}

export interface HttpResponse {
  status: number;
  /** Lowercase names. */
  headers: Record<string, string | string[] | undefined>;
  body: AsyncIterable<Uint8Array>;
  /** Read the whole body (bounded by `limit` bytes: more is an error). */
  bytes(limit: number): Promise<Buffer>;
  /** Discard the body so the connection can be reused. */
  dump(): Promise<void>;
}

export type HttpTransport = (req: HttpRequest) => Promise<HttpResponse>;

export function header(res: Pick<HttpResponse, 'headers'>, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** Every WWW-Authenticate value (a response may carry several headers). */
export function headerValues(res: Pick<HttpResponse, 'headers'>, name: string): string[] {
  const v = res.headers[name.toLowerCase()];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** Collect an async iterable of chunks, failing past `limit` bytes. */
export async function readAll(body: AsyncIterable<Uint8Array>, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of body) {
    n += chunk.length;
    if (n > limit) throw new AuraeError('FAILED_PRECONDITION', `${what}: larger than ${limit} bytes: refusing it`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt'];

/** Node's bundled roots plus the system bundle when there is one (Node does not read it by default). */
export function systemCertificates(): string[] {
  const out = [...tls.rootCertificates];
  for (const file of SYSTEM_BUNDLES) {
    try {
      out.push(readFileSync(file, 'utf8'));
      break;
    } catch {
      // not on this system
    }
  }
  return out;
}

/**
 * undici, loaded on the first request: a node that never pulls does not load it, and it cannot be part of auraed's
 * V8 startup snapshot (at load it touches the fetch globals, whose WebAssembly parser does not exist while a
 * snapshot is built: image/bundle/snapshot.ts).
 */
let undici: Promise<typeof import('undici')> | undefined;

/** The undici transport. Agents are cached per CA file; `close()` ends their connections. */
export function createUndiciTransport(): HttpTransport & { close(): Promise<void> } {
  const agents = new Map<string, Agent>();
  let roots: string[] | null = null;
  const agentFor = ({ Agent }: typeof import('undici'), caFile: string | null | undefined): Agent => {
    const key = caFile ?? '';
    let agent = agents.get(key);
    if (!agent) {
      roots ??= systemCertificates();
      let ca = roots;
      if (caFile) {
        let extra: string;
        try {
          extra = readFileSync(caFile, 'utf8');
        } catch (err) {
          throw new AuraeError('FAILED_PRECONDITION', `reading the registry CA file ${caFile} failed: ${(err as Error).message}: fix images.registries[…].caFile in the node config`);
        }
        ca = [...roots, extra];
      }
      agent = new Agent({ connect: { ca }, headersTimeout: 60_000, bodyTimeout: 60_000 });
      agents.set(key, agent);
    }
    return agent;
  };
  const transport = async (req: HttpRequest): Promise<HttpResponse> => {
    const lib = await (undici ??= import('undici'));
    const res = await lib.request(req.url, {
      method: req.method,
      headers: req.headers,
      signal: req.signal,
      dispatcher: agentFor(lib, req.caFile),
    });
    return {
      status: res.statusCode,
      headers: res.headers as Record<string, string | string[] | undefined>,
      body: res.body,
      bytes: (limit) => readAll(res.body, limit, req.url),
      dump: () => res.body.dump().then(() => undefined),
    };
  };
  return Object.assign(transport, {
    close: async () => {
      await Promise.all([...agents.values()].map((a) => a.close()));
      agents.clear();
    },
  });
}
