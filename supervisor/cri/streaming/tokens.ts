// Single-use, expiring tokens for streaming URLs (kubelet's streaming request cache: 1 minute, bounded). A token
// is the only credential of a URL: random (144 bits), consumed by its first use, forgotten when expired.
import { randomBytes } from 'node:crypto';
import { AuraeError } from '../../errors';

export const TOKEN_LIMITS = {
  ttlMs: 60_000,
  /** Requests waiting for their client at once. */
  maxPending: 1000,
} as const;

export interface TokenCacheOptions {
  ttlMs?: number;
  maxPending?: number;
  now?: () => number;
  newToken?: () => string;
}

export class TokenCache<T> {
  private readonly entries = new Map<string, { value: T; expires: number }>();
  private readonly ttlMs: number;
  private readonly maxPending: number;
  private readonly now: () => number;
  private readonly newToken: () => string;

  constructor(opts: TokenCacheOptions = {}) {
    this.ttlMs = opts.ttlMs ?? TOKEN_LIMITS.ttlMs;
    this.maxPending = opts.maxPending ?? TOKEN_LIMITS.maxPending;
    this.now = opts.now ?? Date.now;
    this.newToken = opts.newToken ?? (() => randomBytes(18).toString('base64url'));
  }

  /** A new token for value. RESOURCE_EXHAUSTED when maxPending requests wait for their client. */
  insert(value: T): string {
    this.sweep();
    if (this.entries.size >= this.maxPending) {
      throw new AuraeError('RESOURCE_EXHAUSTED', `streaming server: ${this.entries.size} requests are waiting for their client already: retry in ${Math.ceil(this.ttlMs / 1000)} s, when unused ones expire`);
    }
    let token = this.newToken();
    while (this.entries.has(token)) token = this.newToken();
    this.entries.set(token, { value, expires: this.now() + this.ttlMs });
    return token;
  }

  /** The value of a live token, which is consumed; undefined when unknown, used or expired. */
  consume(token: string): T | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    this.entries.delete(token);
    return entry.expires > this.now() ? entry.value : undefined;
  }

  get size(): number {
    this.sweep();
    return this.entries.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const [token, entry] of this.entries) if (entry.expires <= now) this.entries.delete(token);
  }
}
