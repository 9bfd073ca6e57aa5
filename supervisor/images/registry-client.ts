// A client of one repository on one registry (OCI distribution API v2): manifests by tag or digest (checked against
// their digest), blobs as streams with Range for resuming. Handles the auth dance (auth.ts) and redirects to blob
// storage itself: the Authorization header never follows a redirect to another origin.
import { createHash } from 'node:crypto';
import { AuraeError } from '../errors';
import { type AuthContext, type Challenge, type Credentials, TokenCache, answerChallenge, initialAuthorization, parseWwwAuthenticate, rejected } from './auth';
import { type HttpResponse, type HttpTransport, header, headerValues, readAll } from './http';
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, type ParsedManifest, parseManifest } from './manifest';
import { type ImageReference, registryConfigKeys } from './reference';
import type { ImagesConfig, PullAuth, RegistrySettings } from './types';

const MAX_REDIRECTS = 5;

export interface RegistryClientOptions {
  ref: Pick<ImageReference, 'registry' | 'endpoint' | 'repository'>;
  config: ImagesConfig;
  /** The request's credentials; they win over the config's. */
  auth?: PullAuth;
  transport: HttpTransport;
  tokens: TokenCache;
}

export interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  contentType: string;
  parsed: ParsedManifest;
}

export interface BlobResponse {
  /** Where the body starts in the blob: the requested offset when the registry honoured Range, else 0. */
  start: number;
  body: AsyncIterable<Uint8Array>;
}

/** The registry's settings in the node config (Docker Hub answers to three spellings). */
export function registrySettings(config: ImagesConfig, registry: string): RegistrySettings | undefined {
  for (const key of registryConfigKeys(registry)) {
    const s = config.registries[key];
    if (s) return s;
  }
  return undefined;
}

export function sha256Digest(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export class RegistryClient {
  readonly base: string;
  private readonly ctx: AuthContext;
  private readonly registry: string;
  private readonly repository: string;
  private readonly transport: HttpTransport;
  /** The challenge this registry answered with last (so the next request goes authorised at once). */
  private get known(): Challenge | undefined {
    return this.ctx.tokens.challenge(this.registry);
  }

  constructor(private readonly opts: RegistryClientOptions) {
    const settings = registrySettings(opts.config, opts.ref.registry);
    const insecure = settings?.insecure ?? false;
    this.base = `${insecure ? 'http' : 'https'}://${opts.ref.endpoint}/v2/`;
    this.registry = opts.ref.registry;
    this.repository = opts.ref.repository;
    this.transport = opts.transport;
    const requestAuth = opts.auth;
    let credentials: Credentials | null = settings?.auth ?? null;
    if (requestAuth?.username !== undefined && requestAuth.username !== '') {
      credentials = { username: requestAuth.username, password: requestAuth.password ?? '' };
    }
    this.ctx = {
      registry: opts.ref.registry,
      scope: `repository:${opts.ref.repository}:pull`,
      credentials,
      registryToken: requestAuth?.registryToken || null,
      insecure,
      caFile: settings?.caFile ?? null,
      transport: opts.transport,
      tokens: opts.tokens,
    };
  }

  /** GET a manifest or index by tag or digest; the bytes are checked against the digest asked for or announced. */
  async getManifest(reference: string, signal?: AbortSignal): Promise<FetchedManifest> {
    const what = `${this.registry}/${this.repository}:${reference}`.replace(/:(sha256:)/, '@$1');
    const res = await this.send(`${this.repository}/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, signal, what);
    if (res.status === 404) {
      await res.dump();
      throw new AuraeError('NOT_FOUND', `image ${what}: the registry has no such manifest (HTTP 404): check the name and tag`);
    }
    await this.expectOk(res, what);
    const bytes = await readAll(res.body, MAX_MANIFEST_BYTES, `manifest ${what}`);
    const digest = sha256Digest(bytes);
    const expected = reference.startsWith('sha256:') ? reference : header(res, 'docker-content-digest');
    if (expected !== undefined && expected.startsWith('sha256:') && expected !== digest) {
      throw new AuraeError('FAILED_PRECONDITION', `image ${what}: the registry served a manifest whose digest is ${digest}, not ${expected}: refusing it (nothing stored)`);
    }
    const contentType = header(res, 'content-type') ?? '';
    return { bytes, digest, contentType, parsed: parseManifest(bytes, contentType, `manifest ${what}`) };
  }

  /**
   * HEAD a manifest: its digest (Docker-Content-Digest), media type and size without the body; null when the
   * registry does not announce a digest (then only a GET tells). NOT_FOUND for an unknown tag.
   */
  async headManifest(reference: string, signal?: AbortSignal): Promise<{ digest: string; contentType: string; size: number } | null> {
    const what = `${this.registry}/${this.repository}:${reference}`.replace(/:(sha256:)/, '@$1');
    const res = await this.send(`${this.repository}/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, signal, what, 'HEAD');
    if (res.status === 404) {
      await res.dump();
      throw new AuraeError('NOT_FOUND', `image ${what}: the registry has no such manifest (HTTP 404): check the name and tag`);
    }
    await this.expectOk(res, what);
    await res.dump();
    const digest = header(res, 'docker-content-digest');
    if (!digest?.startsWith('sha256:')) return null;
    return { digest, contentType: header(res, 'content-type') ?? '', size: Number(header(res, 'content-length') ?? -1) };
  }

  /** GET a blob from `offset` (Range); a registry may ignore Range and answer 200 from the start. */
  async getBlob(digest: string, offset: number, signal?: AbortSignal): Promise<BlobResponse> {
    const what = `blob ${digest} of ${this.registry}/${this.repository}`;
    const res = await this.send(`${this.repository}/blobs/${digest}`, offset > 0 ? { range: `bytes=${offset}-` } : {}, signal, what);
    if (res.status === 404) {
      await res.dump();
      throw new AuraeError('NOT_FOUND', `${what}: the registry has no such blob (HTTP 404): the image is incomplete in the registry; push it again`);
    }
    if (res.status === 416) {
      // The range starts at or past the end: our partial is not a prefix of this blob; refetch from scratch.
      await res.dump();
      return this.getBlob(digest, 0, signal);
    }
    if (res.status === 206) {
      const range = /^bytes (\d+)-/.exec(header(res, 'content-range') ?? '');
      const start = range ? Number(range[1]) : NaN;
      if (start !== offset) {
        await res.dump();
        return this.getBlob(digest, 0, signal);
      }
      return { start, body: res.body };
    }
    await this.expectOk(res, what);
    return { start: 0, body: res.body };
  }

  private async expectOk(res: HttpResponse, what: string): Promise<void> {
    if (res.status === 200) return;
    await res.dump();
    if (res.status === 401 || res.status === 403) throw rejected(this.ctx, res.status, this.known);
    if (res.status === 429 || res.status >= 500) {
      throw new AuraeError('UNAVAILABLE', `${what}: the registry answered HTTP ${res.status}: try again later`);
    }
    throw new AuraeError('FAILED_PRECONDITION', `${what}: the registry answered HTTP ${res.status}`);
  }

  /** One authorised GET: challenge answered once, redirects followed (Authorization only to the same origin). */
  private async send(path: string, headers: Record<string, string>, signal: AbortSignal | undefined, what: string, method: 'GET' | 'HEAD' = 'GET'): Promise<HttpResponse> {
    const ctx = { ...this.ctx, signal };
    let authorization = initialAuthorization(ctx, this.known);
    let answered = false;
    for (;;) {
      const res = await this.follow(method, this.base + path, { ...headers, ...(authorization ? { authorization } : {}) }, signal, what);
      if (res.status !== 401 || answered) return res;
      const challenges = headerValues(res, 'www-authenticate');
      await res.dump();
      let parsed: Challenge[];
      try {
        parsed = parseWwwAuthenticate(challenges);
      } catch (err) {
        throw new AuraeError('UNAVAILABLE', `registry ${this.registry}: unreadable WWW-Authenticate header: ${(err as Error).message}`);
      }
      if (authorization?.startsWith('Bearer ') && !ctx.registryToken) {
        // A cached token the registry no longer accepts: forget it and get a fresh one.
        ctx.tokens.delete(TokenCache.key(ctx.registry, ctx.credentials, ctx.scope));
      }
      if (ctx.registryToken) throw rejected(ctx, 401, undefined);
      const answer = await answerChallenge(ctx, parsed);
      ctx.tokens.rememberChallenge(this.registry, answer.challenge);
      authorization = answer.authorization;
      answered = true;
    }
  }

  private async follow(method: 'GET' | 'HEAD', url: string, headers: Record<string, string>, signal: AbortSignal | undefined, what: string): Promise<HttpResponse> {
    const origin = new URL(url).origin;
    let current = url;
    let currentHeaders = headers;
    for (let hop = 0; ; hop++) {
      let res: HttpResponse;
      try {
        res = await this.transport({ method, url: current, headers: currentHeaders, signal, caFile: this.ctx.caFile });
      } catch (err) {
        if (signal?.aborted) throw err;
        throw unreachable(this.registry, current, err, this.base.startsWith('https'));
      }
      if (![301, 302, 303, 307, 308].includes(res.status)) return res;
      const location = header(res, 'location');
      await res.dump();
      if (!location) throw new AuraeError('UNAVAILABLE', `${what}: the registry redirected (HTTP ${res.status}) without a Location`);
      if (hop >= MAX_REDIRECTS) throw new AuraeError('UNAVAILABLE', `${what}: more than ${MAX_REDIRECTS} redirects`);
      const next = new URL(location, current);
      if (next.protocol !== 'https:' && next.protocol !== 'http:') throw new AuraeError('UNAVAILABLE', `${what}: redirect to unsupported URL scheme ${next.protocol}`);
      if (next.protocol === 'http:' && current.startsWith('https:')) {
        throw new AuraeError('UNAVAILABLE', `${what}: the registry redirected from HTTPS to plain HTTP (${next.origin}): refusing the downgrade`);
      }
      if (next.origin !== origin) {
        // Pre-signed blob storage URLs carry their own authorisation; our token or password must not leak there.
        const { authorization: _dropped, ...rest } = currentHeaders;
        currentHeaders = rest;
      }
      current = next.toString();
    }
  }
}

function unreachable(registry: string, url: string, err: unknown, https: boolean): AuraeError {
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = e.code ?? e.cause?.code ?? '';
  const message = e.message ?? String(err);
  const origin = new URL(url).origin;
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code) || /certificate/i.test(message)) {
    return new AuraeError('UNAVAILABLE', `registry ${registry} (${origin}): TLS certificate verification failed (${code || message}): set images.registries["${registry}"].caFile to the CA that signed it`, { cause: err });
  }
  if (https && (code === 'EPROTO' || /wrong version number|packet length too long/i.test(message))) {
    return new AuraeError('UNAVAILABLE', `registry ${registry} (${origin}): TLS handshake failed (${code}): if it serves plain HTTP, mark it insecure in images.registries`, { cause: err });
  }
  return new AuraeError('UNAVAILABLE', `registry ${registry} (${origin}) is unreachable: ${code ? `${code}: ` : ''}${message}: check the address and that the registry runs`, { cause: err });
}
