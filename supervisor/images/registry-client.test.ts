// The registry client against a fake transport: challenge parsing, the Bearer and Basic dances, token caching per
// scope, redirects that drop Authorization on another origin, and errors that name the fix.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TokenCache, parseWwwAuthenticate } from './auth';
import type { HttpRequest, HttpResponse } from './http';
import { MEDIA_TYPES } from './manifest';
import { parseReference } from './reference';
import { RegistryClient } from './registry-client';
import type { ImagesConfig } from './types';
import { failure } from './testing';

function response(status: number, headers: Record<string, string | string[]> = {}, body: Buffer | string = ''): HttpResponse {
  const bytes = Buffer.from(body);
  return {
    status,
    headers,
    body: (async function* () {
      if (bytes.length) yield bytes;
    })(),
    bytes: async () => bytes,
    dump: async () => undefined,
  };
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const manifest = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'1'.repeat(64)}`, size: 2 },
    layers: [],
  }),
);

describe('parseWwwAuthenticate', () => {
  it('reads Bearer with quoted params, several challenges, escapes and token68', () => {
    expect(parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' } },
    ]);
    expect(parseWwwAuthenticate(['Basic realm="a, b", charset=UTF-8, Bearer realm="x\\"y"', 'Negotiate abc=='])).toEqual([
      { scheme: 'basic', params: { realm: 'a, b', charset: 'UTF-8' } },
      { scheme: 'bearer', params: { realm: 'x"y' } },
      { scheme: 'negotiate', params: { token68: 'abc==' } },
    ]);
    expect(parseWwwAuthenticate('Basic')).toEqual([{ scheme: 'basic', params: {} }]);
  });
  it('throws on an unterminated quoted string', () => {
    expect(() => parseWwwAuthenticate('Bearer realm="x')).toThrow(/unterminated/);
  });
});

interface Fake {
  requests: HttpRequest[];
  transport: (req: HttpRequest) => Promise<HttpResponse>;
}

/** A registry at reg.test with a token service at auth.test (Bearer) or Basic, user u / password p. */
function fakeRegistry(mode: 'bearer' | 'basic', opts: { anonymous?: boolean; redirectBlob?: boolean } = {}): Fake {
  const requests: HttpRequest[] = [];
  const good = `Basic ${Buffer.from('u:p').toString('base64')}`;
  let n = 0;
  const transport = async (req: HttpRequest): Promise<HttpResponse> => {
    requests.push(req);
    const url = new URL(req.url);
    const auth = req.headers.authorization;
    if (url.host === 'auth.test') {
      if (auth && auth !== good) return response(401);
      if (!auth && !opts.anonymous) return response(401);
      expect(url.searchParams.get('scope')).toBe('repository:team/app:pull');
      expect(url.searchParams.get('service')).toBe('reg');
      return response(200, { 'content-type': 'application/json' }, JSON.stringify({ token: `tok${++n}`, expires_in: 300 }));
    }
    if (url.host === 'storage.test') return response(200, {}, 'blob!');
    const ok = mode === 'bearer' ? auth?.startsWith('Bearer tok') : auth === good;
    if (!ok) {
      return response(401, { 'www-authenticate': mode === 'bearer' ? 'Bearer realm="https://auth.test/token",service="reg",scope="repository:team/app:pull"' : 'Basic realm="reg"' });
    }
    if (url.pathname.includes('/manifests/')) return response(200, { 'content-type': MEDIA_TYPES.ociManifest, 'docker-content-digest': sha(manifest) }, manifest);
    if (url.pathname.includes('/blobs/') && opts.redirectBlob) return response(307, { location: 'https://storage.test/signed?x=1' });
    return response(404);
  };
  return { requests, transport };
}

const config = (auth: { username: string; password: string } | null = null, extra: Partial<ImagesConfig['registries'][string]> = {}): ImagesConfig => ({
  registries: { 'reg.test': { insecure: false, caFile: null, auth, ...extra } },
});
const ref = parseReference('reg.test/team/app:1');


describe('RegistryClient', () => {
  it('does the Bearer dance with credentials from the config, then reuses the cached token', async () => {
    const fake = fakeRegistry('bearer');
    const tokens = new TokenCache();
    const client = new RegistryClient({ ref, config: config({ username: 'u', password: 'p' }), transport: fake.transport, tokens });
    const m = await client.getManifest('1');
    expect(m.digest).toBe(sha(manifest));
    expect(m.parsed.kind).toBe('manifest');
    expect(fake.requests.map((r) => new URL(r.url).host)).toEqual(['reg.test', 'auth.test', 'reg.test']);
    expect(fake.requests[0]!.url).toBe('https://reg.test/v2/team/app/manifests/1');
    expect(fake.requests[0]!.headers.accept).toContain(MEDIA_TYPES.ociIndex);
    // A second client (next pull) with the same credentials starts with the cached token.
    fake.requests.length = 0;
    const again = new RegistryClient({ ref, config: config({ username: 'u', password: 'p' }), transport: fake.transport, tokens });
    await again.getManifest('1');
    expect(fake.requests.length).toBeLessThanOrEqual(2);
    expect(fake.requests.filter((r) => r.url.includes('auth.test'))).toHaveLength(0);
  });

  it('gets an anonymous token when the token service allows it; request credentials win over the config', async () => {
    const fake = fakeRegistry('bearer', { anonymous: true });
    await new RegistryClient({ ref, config: config(), transport: fake.transport, tokens: new TokenCache() }).getManifest('1');
    expect(fake.requests[1]!.headers.authorization).toBeUndefined();
    const fake2 = fakeRegistry('bearer');
    await new RegistryClient({ ref, config: config({ username: 'x', password: 'y' }), auth: { username: 'u', password: 'p' }, transport: fake2.transport, tokens: new TokenCache() }).getManifest('1');
  });

  it('says UNAUTHENTICATED clearly for wrong or missing credentials, never echoing the password', async () => {
    const wrong = await failure(new RegistryClient({ ref, config: config({ username: 'u', password: 'hunter2' }), transport: fakeRegistry('bearer').transport, tokens: new TokenCache() }).getManifest('1'));
    expect(wrong.code).toBe('UNAUTHENTICATED');
    expect(wrong.message).toMatch(/rejected the credentials.*images\.registries\["reg\.test"\]\.auth/);
    expect(wrong.message).not.toContain('hunter2');
    const none = await failure(new RegistryClient({ ref, config: config(), transport: fakeRegistry('bearer').transport, tokens: new TokenCache() }).getManifest('1'));
    expect(none.code).toBe('UNAUTHENTICATED');
    expect(none.message).toMatch(/refused anonymous access/);
    const basicWrong = await failure(new RegistryClient({ ref, config: config({ username: 'u', password: 'bad' }), transport: fakeRegistry('basic').transport, tokens: new TokenCache() }).getManifest('1'));
    expect(basicWrong.code).toBe('UNAUTHENTICATED');
    expect(basicWrong.message).toMatch(/credentials were rejected.*Basic/);
    const basicNone = await failure(new RegistryClient({ ref, config: config(), transport: fakeRegistry('basic').transport, tokens: new TokenCache() }).getManifest('1'));
    expect(basicNone.message).toMatch(/requires a username and password/);
  });

  it('answers Basic challenges and then sends Basic at once', async () => {
    const fake = fakeRegistry('basic');
    const client = new RegistryClient({ ref, config: config({ username: 'u', password: 'p' }), transport: fake.transport, tokens: new TokenCache() });
    await client.getManifest('1');
    await client.getManifest('1');
    expect(fake.requests.map((r) => r.headers.authorization !== undefined)).toEqual([false, true, true]);
  });

  it('follows a blob redirect to another origin without the Authorization header', async () => {
    const fake = fakeRegistry('bearer', { redirectBlob: true });
    const client = new RegistryClient({ ref, config: config({ username: 'u', password: 'p' }), transport: fake.transport, tokens: new TokenCache() });
    const blob = await client.getBlob(`sha256:${'2'.repeat(64)}`, 0);
    let text = '';
    for await (const c of blob.body) text += Buffer.from(c).toString();
    expect(text).toBe('blob!');
    const storage = fake.requests.find((r) => r.url.startsWith('https://storage.test/'))!;
    expect(storage.headers.authorization).toBeUndefined();
    const reg = fake.requests.filter((r) => r.url.includes('/blobs/'));
    expect(reg.at(-1)!.headers.authorization).toMatch(/^Bearer tok/);
  });

  it('uses plain HTTP only for a registry marked insecure, and passes the CA file', async () => {
    const seen: HttpRequest[] = [];
    const transport = async (req: HttpRequest) => {
      seen.push(req);
      return response(200, { 'content-type': MEDIA_TYPES.ociManifest }, manifest);
    };
    await new RegistryClient({ ref, config: config(null, { insecure: true }), transport, tokens: new TokenCache() }).getManifest('1');
    await new RegistryClient({ ref, config: config(null, { caFile: '/etc/ca.pem' }), transport, tokens: new TokenCache() }).getManifest('1');
    await new RegistryClient({ ref: parseReference('other.test/x'), config: config(null, { insecure: true }), transport, tokens: new TokenCache() }).getManifest('latest');
    expect(seen.map((r) => [r.url.split('/v2/')[0], r.caFile])).toEqual([
      ['http://reg.test', null],
      ['https://reg.test', '/etc/ca.pem'],
      ['https://other.test', null],
    ]);
  });

  it('uses a request registry token as is (no token fetch) and says when it is rejected', async () => {
    const fake = fakeRegistry('bearer');
    await new RegistryClient({ ref, config: config(), auth: { registryToken: 'tok-given' }, transport: fake.transport, tokens: new TokenCache() }).getManifest('1');
    expect(fake.requests.map((r) => r.headers.authorization)).toEqual(['Bearer tok-given']);
    const stale = await failure(new RegistryClient({ ref, config: config(), auth: { registryToken: 'stale' }, transport: fake.transport, tokens: new TokenCache() }).getManifest('1'));
    expect(stale.code).toBe('UNAUTHENTICATED');
    expect(stale.message).toMatch(/registry token was rejected/);
  });

  it('TokenCache forgets a token shortly before it expires; keys never hold the password', () => {
    let now = 0;
    const cache = new TokenCache(() => now);
    const key = TokenCache.key('reg.test', { username: 'u', password: 'secret' }, 'repository:a:pull');
    expect(key).not.toContain('secret');
    expect(key).not.toBe(TokenCache.key('reg.test', { username: 'u', password: 'other' }, 'repository:a:pull'));
    cache.set(key, 't', 60);
    now = 49_000;
    expect(cache.get(key)).toBe('t');
    now = 50_000;
    expect(cache.get(key)).toBeUndefined();
  });

  it('HEADs a manifest for its digest through the same auth dance', async () => {
    const fake = fakeRegistry('bearer');
    const client = new RegistryClient({ ref, config: config({ username: 'u', password: 'p' }), transport: fake.transport, tokens: new TokenCache() });
    expect(await client.headManifest('1')).toMatchObject({ digest: sha(manifest), contentType: MEDIA_TYPES.ociManifest });
    expect(fake.requests.filter((r) => r.url.includes('reg.test')).map((r) => r.method)).toEqual(['HEAD', 'HEAD']);
  });

  it('refuses a manifest whose bytes do not match the digest asked for', async () => {
    const transport = async () => response(200, { 'content-type': MEDIA_TYPES.ociManifest }, manifest);
    const err = await failure(new RegistryClient({ ref, config: config(), transport, tokens: new TokenCache() }).getManifest(`sha256:${'0'.repeat(64)}`));
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toMatch(/digest is sha256:/);
  });

  it('maps 404 to NOT_FOUND and connection failures to UNAVAILABLE', async () => {
    const notFound = await failure(new RegistryClient({ ref, config: config(), transport: async () => response(404), tokens: new TokenCache() }).getManifest('1'));
    expect(notFound.code).toBe('NOT_FOUND');
    const refused = await failure(
      new RegistryClient({
        ref,
        config: config(),
        transport: async () => {
          throw Object.assign(new Error('connect ECONNREFUSED 1.2.3.4:443'), { code: 'ECONNREFUSED' });
        },
        tokens: new TokenCache(),
      }).getManifest('1'),
    );
    expect(refused.code).toBe('UNAVAILABLE');
    expect(refused.message).toMatch(/unreachable: ECONNREFUSED/);
    const cert = await failure(
      new RegistryClient({
        ref,
        config: config(),
        transport: async () => {
          throw Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
        },
        tokens: new TokenCache(),
      }).getManifest('1'),
    );
    expect(cert.message).toMatch(/caFile/);
  });
});
