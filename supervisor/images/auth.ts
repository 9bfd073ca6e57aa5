// Registry authentication: `WWW-Authenticate` challenges (RFC 7235), the Docker token dance (anonymous or with
// Basic credentials, per `repository:<name>:pull` scope, cached until shortly before expiry) and plain Basic.
// Credentials never reach a log line, an error message or a host other than the registry and its token realm.
import { createHash } from 'node:crypto';
import { AuraeError } from '../errors';
import { type HttpTransport, header, readAll } from './http';

export interface Challenge {
  /** Lowercase: "bearer", "basic". */
  scheme: string;
  /** Lowercase parameter names. */
  params: Record<string, string>;
}

const TOKEN = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;

/** Parse one or several `WWW-Authenticate` values into challenges; tolerant of spacing, strict on structure. */
export function parseWwwAuthenticate(values: string | string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const value of Array.isArray(values) ? values : [values]) {
    let i = 0;
    const s = value;
    const skip = (chars: string) => {
      while (i < s.length && chars.includes(s[i]!)) i++;
    };
    const token = () => {
      const start = i;
      while (i < s.length && TOKEN.test(s[i]!)) i++;
      return s.slice(start, i);
    };
    let current: Challenge | null = null;
    while (i < s.length) {
      skip(' \t,');
      if (i >= s.length) break;
      const start = i;
      const word = token();
      if (word === '') throw new Error(`WWW-Authenticate: unexpected ${JSON.stringify(s[i])} at ${i}`);
      skip(' \t');
      if (s[i] === '=' && current !== null && s[i + 1] !== '=') {
        // name=value: a parameter of the current challenge.
        i++;
        skip(' \t');
        let v: string;
        if (s[i] === '"') {
          i++;
          v = '';
          while (i < s.length && s[i] !== '"') {
            if (s[i] === '\\' && i + 1 < s.length) i++;
            v += s[i];
            i++;
          }
          if (s[i] !== '"') throw new Error('WWW-Authenticate: unterminated quoted string');
          i++;
        } else {
          v = token();
        }
        current.params[word.toLowerCase()] = v;
      } else if (current !== null && i < s.length && s[i] === '=' ) {
        // token68 (e.g. "Negotiate abc=="): keep it as a parameter of its own.
        while (s[i] === '=') i++;
        current.params.token68 = s.slice(start, i);
      } else {
        current = { scheme: word.toLowerCase(), params: {} };
        out.push(current);
      }
    }
  }
  return out;
}

export interface Credentials {
  username: string;
  password: string;
}

function basic(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

/** Tokens by (registry, credentials, scope); the credentials only as a hash. */
export class TokenCache {
  private readonly tokens = new Map<string, { value: string; expiresAt: number }>();
  /** The challenge each registry answered with last: the next pull goes authorised at once. */
  private readonly challenges = new Map<string, Challenge>();
  constructor(private readonly now: () => number = Date.now) {}

  challenge(registry: string): Challenge | undefined {
    return this.challenges.get(registry);
  }
  rememberChallenge(registry: string, challenge: Challenge): void {
    this.challenges.set(registry, challenge);
  }

  static key(registry: string, credentials: Credentials | null, scope: string): string {
    const who = credentials ? createHash('sha256').update(`${credentials.username}\0${credentials.password}`).digest('hex').slice(0, 16) : 'anonymous';
    return `${registry} ${who} ${scope}`;
  }
  get(key: string): string | undefined {
    const t = this.tokens.get(key);
    if (!t) return undefined;
    if (t.expiresAt <= this.now()) {
      this.tokens.delete(key);
      return undefined;
    }
    return t.value;
  }
  set(key: string, value: string, expiresInSec: number): void {
    // Renew 10 s early; the distribution spec says to assume 60 s when the server does not say.
    this.tokens.set(key, { value, expiresAt: this.now() + Math.max(expiresInSec - 10, 1) * 1000 });
  }
  delete(key: string): void {
    this.tokens.delete(key);
  }
}

export interface AuthContext {
  /** The registry as the user named it (for messages and config hints). */
  registry: string;
  /** `repository:<name>:pull`. */
  scope: string;
  credentials: Credentials | null;
  /** A bearer token given with the request: used as is, no dance. */
  registryToken: string | null;
  /** The registry is reached over plain HTTP (insecure): only then may credentials go to an http:// realm. */
  insecure: boolean;
  caFile: string | null;
  transport: HttpTransport;
  tokens: TokenCache;
  signal?: AbortSignal;
}

/** What to send before any challenge: a cached token, the request's token, or nothing. */
export function initialAuthorization(ctx: AuthContext, known: Challenge | undefined): string | undefined {
  if (ctx.registryToken) return `Bearer ${ctx.registryToken}`;
  if (known?.scheme === 'basic' && ctx.credentials) return basic(ctx.credentials);
  if (known?.scheme === 'bearer') {
    const t = ctx.tokens.get(TokenCache.key(ctx.registry, ctx.credentials, ctx.scope));
    if (t) return `Bearer ${t}`;
  }
  return undefined;
}

const hint = (registry: string) => `images.registries["${registry}"].auth in the node config or the pull's credentials`;

/**
 * Answer a 401's challenges: the Authorization value for the retry. Bearer: fetch a token from the realm (with
 * Basic credentials when there are some); Basic: the credentials. Throws UNAUTHENTICATED when nothing can answer.
 */
export async function answerChallenge(ctx: AuthContext, challenges: Challenge[]): Promise<{ authorization: string; challenge: Challenge }> {
  const bearer = challenges.find((c) => c.scheme === 'bearer');
  const basicChallenge = challenges.find((c) => c.scheme === 'basic');
  if (bearer) {
    const realm = bearer.params.realm;
    if (!realm) throw new AuraeError('UNAVAILABLE', `registry ${ctx.registry}: its Bearer challenge has no realm: the registry is misconfigured`);
    const token = await fetchToken(ctx, realm, bearer.params.service);
    return { authorization: `Bearer ${token}`, challenge: bearer };
  }
  if (basicChallenge) {
    if (!ctx.credentials) {
      throw new AuraeError('UNAUTHENTICATED', `registry ${ctx.registry} requires a username and password (Basic auth): set ${hint(ctx.registry)}`);
    }
    return { authorization: basic(ctx.credentials), challenge: basicChallenge };
  }
  const schemes = challenges.map((c) => c.scheme).join(', ') || 'none';
  throw new AuraeError('UNAUTHENTICATED', `registry ${ctx.registry} asks for authentication with an unsupported scheme (${schemes}): only Bearer and Basic are supported`);
}

async function fetchToken(ctx: AuthContext, realm: string, service: string | undefined): Promise<string> {
  const key = TokenCache.key(ctx.registry, ctx.credentials, ctx.scope);
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new AuraeError('UNAVAILABLE', `registry ${ctx.registry}: its token realm ${JSON.stringify(realm)} is not a URL: the registry is misconfigured`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new AuraeError('UNAVAILABLE', `registry ${ctx.registry}: token realm ${url.origin} is neither https nor http`);
  }
  if (url.protocol === 'http:' && ctx.credentials && !ctx.insecure) {
    throw new AuraeError('FAILED_PRECONDITION', `registry ${ctx.registry}: its token service ${url.origin} is plain HTTP: refusing to send credentials there; mark the registry insecure in images.registries if that is intended`);
  }
  if (service) url.searchParams.set('service', service);
  url.searchParams.set('scope', ctx.scope);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (ctx.credentials) {
    url.searchParams.set('account', ctx.credentials.username);
    headers.authorization = basic(ctx.credentials);
  }
  let res;
  try {
    res = await ctx.transport({ method: 'GET', url: url.toString(), headers, signal: ctx.signal, caFile: ctx.caFile });
  } catch (err) {
    if (ctx.signal?.aborted) throw err;
    throw new AuraeError('UNAVAILABLE', `registry ${ctx.registry}: its token service ${url.origin} is unreachable: ${(err as Error).message}`, { cause: err });
  }
  if (res.status === 401 || res.status === 403) {
    await res.dump();
    throw new AuraeError(
      'UNAUTHENTICATED',
      ctx.credentials
        ? `registry ${ctx.registry}: the token service ${url.origin} rejected the credentials (HTTP ${res.status}): check ${hint(ctx.registry)}`
        : `registry ${ctx.registry}: the token service ${url.origin} refused anonymous access (HTTP ${res.status}): set ${hint(ctx.registry)}`,
    );
  }
  if (res.status !== 200) {
    await res.dump();
    throw new AuraeError('UNAVAILABLE', `registry ${ctx.registry}: the token service ${url.origin} answered HTTP ${res.status}: try again later`);
  }
  let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown };
  try {
    doc = JSON.parse((await readAll(res.body, 1024 * 1024, 'token response')).toString('utf8'));
  } catch (err) {
    if (err instanceof AuraeError) throw err;
    throw new AuraeError('UNAVAILABLE', `registry ${ctx.registry}: the token service ${url.origin} answered something that is not JSON (content-type ${header(res, 'content-type') ?? 'none'})`);
  }
  const token = typeof doc.token === 'string' && doc.token ? doc.token : typeof doc.access_token === 'string' ? doc.access_token : '';
  if (!token) throw new AuraeError('UNAVAILABLE', `registry ${ctx.registry}: the token service ${url.origin} answered without a token`);
  const expiresIn = typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in : 60;
  ctx.tokens.set(key, token, expiresIn);
  return token;
}

/** A 401 that survived our answer: whose fault, in words. */
export function rejected(ctx: AuthContext, status: number, answered: Challenge | undefined): AuraeError {
  if (status === 403) {
    return new AuraeError('PERMISSION_DENIED', `registry ${ctx.registry}: access to ${ctx.scope} is denied (HTTP 403): the account lacks pull rights on this repository`);
  }
  if (ctx.registryToken) return new AuraeError('UNAUTHENTICATED', `registry ${ctx.registry}: the given registry token was rejected (HTTP 401): get a fresh token`);
  if (!ctx.credentials) {
    return new AuraeError('UNAUTHENTICATED', `registry ${ctx.registry}: ${ctx.scope} requires authentication and no credentials were given: set ${hint(ctx.registry)}`);
  }
  return new AuraeError(
    'UNAUTHENTICATED',
    `registry ${ctx.registry}: the credentials were rejected for ${ctx.scope}${answered ? ` (${answered.scheme === 'basic' ? 'Basic' : 'Bearer'} auth)` : ''}: check ${hint(ctx.registry)}`,
  );
}
