// The bounded audit log of mutating and refused calls (table authz_audit in the state database).
//
// Anyone who can open a TCP connection can cause refusals (UNAUTHENTICATED needs no certificate we trust;
// PERMISSION_DENIED, NOT_FOUND… need only one), so the log is built so that strangers can neither flush out
// the admins' records nor turn the node's disk into their fsync loop:
// - two budgets: refusals keep at most floor(maxRecords / 2) rows, accepted calls the rest; each kind only
//   ever evicts its own kind, so no number of refusals can push out an accepted mutation;
// - refusals are aggregated: the same (identity, peer address, method, code, node, via) becomes one row with a
//   count and its first/last time, however often it repeats;
// - refusals are buffered and written in one transaction per batch (every flushIntervalMs, or maxPending
//   distinct rows, before any accepted call's row, before every read, and at close); accepted calls are
//   written synchronously (durable before the caller hears OK). A crash loses at most the unflushed refusals.
// An accepted call's row commits the database's write group with it (supervisor/store WriteGroup): the rows the
// call itself staged (CellService.Start: its executable's row) and its audit row reach the disk in one
// transaction, one fsync, before the reply.
import type { AuditEvent } from '../server';
import { type Db, type Migration, migrate, writeGroup } from '../store';

/**
 * The audit table itself was created by AUTHZ_MIGRATIONS (authz-store.ts, versions 1-2); these migrations,
 * a subsystem of their own, add what aggregation and the two budgets need. They run after authz's.
 */
export const AUDIT_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'audit: aggregated refusals (count, first time, key) and the refusal budget',
    up: (db) => {
      db.exec(`
        ALTER TABLE authz_audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
        -- NULL when count is 1 (time is both the first and the last).
        ALTER TABLE authz_audit ADD COLUMN first_time TEXT;
        ALTER TABLE authz_audit ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
        -- Only refusals have one: what repeats of the same refusal are aggregated by.
        ALTER TABLE authz_audit ADD COLUMN agg_key TEXT;
        UPDATE authz_audit SET refused = 1 WHERE code IN (${[...REFUSAL_CODES].map((c) => `'${c}'`).join(', ')});
        CREATE INDEX authz_audit_refused ON authz_audit (refused, id);
        CREATE INDEX authz_audit_agg_key ON authz_audit (agg_key) WHERE agg_key IS NOT NULL;
      `);
    },
  },
];

/**
 * Outcomes that changed nothing, so a caller can produce them at will: refusals. Every other code (OK, and
 * INTERNAL, UNKNOWN, CANCELLED, UNAVAILABLE… which may have changed something half-way) is an accepted call,
 * written synchronously and never evicted by refusals.
 */
export const REFUSAL_CODES: ReadonlySet<string> = new Set([
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'FAILED_PRECONDITION',
  'OUT_OF_RANGE',
  'RESOURCE_EXHAUSTED',
  'UNIMPLEMENTED',
]);

/** One audited call, as written: the call as the RPC wrappers report it (server/rpc.ts AuditEvent), stamped. */
export interface AuditEntry extends AuditEvent {
  /** ISO 8601. */
  time: string;
}

export interface AuditRecord extends AuditEntry {
  id: number;
  /** How many times this refusal happened (1 for accepted calls); `time` is the last, `firstTime` the first. */
  count: number;
  firstTime: string;
}

export interface AuditQuery {
  /** Newest first, at most this many. */
  limit: number;
  identity?: string;
  /** A method pattern (see patterns.ts): exact, "package.Service/*" or "*". */
  method?: string;
  code?: string;
  /** Only records older than this id (paging backwards). */
  beforeId?: number;
}

export interface AuditLog {
  /**
   * Record one call. Accepted calls are durable when this returns; refusals are buffered and aggregated
   * (see flushAudit). Throws when a synchronous write fails.
   */
  appendAudit(entry: AuditEntry): void;
  /** Newest first; writes the buffered refusals first, so a read sees every call made before it. */
  listAudit(query: AuditQuery): AuditRecord[];
  auditCount(): number;
  /** Write the buffered refusals now, in one transaction. */
  flushAudit(): void;
  /** Flush and stop the timer (auraed's shutdown, before the database closes). Later appends are written synchronously. */
  closeAudit(): void;
}

export interface AuditLogOptions {
  /** The log holds at most this many rows: refusals at most half (rounded down), accepted calls the rest. */
  maxRecords: number;
  /** Buffered refusals are written at most this long after the first of a batch; default 1000. */
  flushIntervalMs?: number;
  /** A batch is written as soon as it holds this many distinct rows; default 256. */
  maxPending?: number;
  /** Timer adapter (tests): run `fn` after `ms`, return a cancel function. Default: an unref'd setTimeout. */
  schedule?: (fn: () => void, ms: number) => () => void;
  /** A batch written by the timer failed (its refusals are lost). Default: a line on stderr. */
  onFlushError?: (err: unknown, lost: number) => void;
}

interface Pending {
  entry: AuditEntry;
  firstTime: string;
  count: number;
}

/** The most a row's count reaches (it is a uint32 on the wire); later repeats keep it there. */
export const MAX_AUDIT_COUNT = 0xffff_ffff;

/** The peer without its port: a stranger reconnecting from new source ports is still one peer. */
export function peerAddress(peer: string): string {
  const m = /^(.*(?:\d|\])):\d+$/.exec(peer);
  return m?.[1] ?? peer;
}

function aggregationKey(e: AuditEntry): string {
  return JSON.stringify([e.identity, peerAddress(e.peer), e.method, e.code, e.node ?? null, e.via ?? null]);
}

/** Migrate the audit log's columns in `db` (authz's migrations must have run) and return the log over them. */
export function createAuditLog(db: Db, options: AuditLogOptions): AuditLog {
  if (!Number.isInteger(options.maxRecords) || options.maxRecords < 1) {
    throw new Error(`auditMaxRecords must be a positive integer (got ${options.maxRecords})`);
  }
  migrate(db, 'authz-audit', AUDIT_MIGRATIONS);
  const maxRefusals = Math.floor(options.maxRecords / 2);
  const maxAccepted = options.maxRecords - maxRefusals;
  const flushIntervalMs = options.flushIntervalMs ?? 1000;
  const maxPending = options.maxPending ?? 256;
  const schedule =
    options.schedule ??
    ((fn: () => void, ms: number) => {
      const t = setTimeout(fn, ms);
      t.unref();
      return () => clearTimeout(t);
    });
  const onFlushError =
    options.onFlushError ??
    ((err: unknown, lost: number) => process.stderr.write(`audit: writing ${lost} refusal row(s) failed: ${(err as Error)?.message ?? err}\n`));

  const insert = db.prepare(
    'INSERT INTO authz_audit (time, identity, method, code, detail, peer, node, via, count, first_time, refused, agg_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const findAggregate = db.prepare('SELECT id, count, time, first_time FROM authz_audit WHERE agg_key = ? ORDER BY id DESC LIMIT 1');
  const deleteId = db.prepare('DELETE FROM authz_audit WHERE id = ?');
  // By count, not by id: ids of the two kinds interleave.
  const prune = db.prepare('DELETE FROM authz_audit WHERE id IN (SELECT id FROM authz_audit WHERE refused = ? ORDER BY id DESC LIMIT -1 OFFSET ?)');
  const countAll = db.prepare('SELECT COUNT(*) AS n FROM authz_audit');

  // Map order = order of the last occurrence (a repeat is moved to the end), which becomes the id order.
  let pending = new Map<string, Pending>();
  let cancelTimer: (() => void) | null = null;
  let closed = false;

  const writeBatch = db.transaction((batch: Pending[]) => {
    for (const p of batch) {
      const e = p.entry;
      const key = aggregationKey(e);
      let count = p.count;
      let firstTime = p.firstTime;
      // A repeat of a refusal already in the log: the row moves to the newest position with the sum, so the
      // log's order stays "by last occurrence" and the refusal budget evicts the stalest refusals first.
      const old = findAggregate.get(key) as { id: number; count: number; time: string; first_time: string | null } | undefined;
      if (old) {
        deleteId.run(old.id);
        count = Math.min(MAX_AUDIT_COUNT, old.count + count);
        firstTime = old.first_time ?? old.time;
      }
      insert.run(e.time, e.identity, e.method, e.code, e.detail, e.peer, e.node ?? null, e.via ?? null, count, firstTime === e.time ? null : firstTime, 1, key);
    }
    prune.run(1, maxRefusals);
  });

  const writeAccepted = db.transaction((e: AuditEntry, batch: Pending[]) => {
    // The refusals buffered before this call come first: ids keep the order calls happened in.
    if (batch.length) writeBatch(batch);
    insert.run(e.time, e.identity, e.method, e.code, e.detail, e.peer, e.node ?? null, e.via ?? null, 1, null, 0, null);
    prune.run(0, maxAccepted);
  });

  const group = writeGroup(db);

  /** Take the buffer (it is empty afterwards whether or not the write succeeds: memory stays bounded). */
  function take(): Pending[] {
    cancelTimer?.();
    cancelTimer = null;
    const batch = [...pending.values()];
    pending = new Map();
    return batch;
  }

  function flushAudit(): void {
    if (pending.size === 0) return;
    writeBatch(take());
  }

  function flushQuietly(): void {
    const n = pending.size;
    try {
      flushAudit();
    } catch (err) {
      onFlushError(err, n);
    }
  }

  function buffer(e: AuditEntry): void {
    const key = aggregationKey(e);
    const seen = pending.get(key);
    if (seen) {
      pending.delete(key);
      pending.set(key, { entry: e, firstTime: seen.firstTime, count: Math.min(MAX_AUDIT_COUNT, seen.count + 1) });
    } else {
      pending.set(key, { entry: e, firstTime: e.time, count: 1 });
    }
    if (closed || pending.size >= maxPending) flushAudit();
    else if (!cancelTimer) cancelTimer = schedule(flushQuietly, flushIntervalMs);
  }

  return {
    appendAudit(e) {
      if (REFUSAL_CODES.has(e.code)) buffer(e);
      else group.commit(() => writeAccepted(e, take()));
    },
    flushAudit,
    closeAudit() {
      closed = true;
      flushAudit();
    },
    listAudit(query) {
      flushQuietly();
      const where: string[] = [];
      const params: unknown[] = [];
      if (query.identity !== undefined) {
        where.push('identity = ?');
        params.push(query.identity);
      }
      if (query.method !== undefined && query.method !== '*') {
        if (query.method.endsWith('/*')) {
          // A prefix match without LIKE: method names contain "_", which LIKE would treat as a wildcard.
          where.push('substr(method, 1, ?) = ?');
          params.push(query.method.length - 1, query.method.slice(0, -1));
        } else {
          where.push('method = ?');
          params.push(query.method);
        }
      }
      if (query.code !== undefined) {
        where.push('code = ?');
        params.push(query.code);
      }
      if (query.beforeId !== undefined) {
        where.push('id < ?');
        params.push(query.beforeId);
      }
      const sql = `SELECT id, time, identity, method, code, detail, peer, node, via, count, first_time FROM authz_audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
      type Row = Omit<AuditRecord, 'node' | 'via' | 'firstTime'> & { node: string | null; via: string | null; first_time: string | null };
      const rows = db.prepare(sql).all(...params, query.limit) as Row[];
      // NULL columns become absent fields (the wire's unset optionals).
      return rows.map(({ node, via, first_time, ...rest }) => ({
        ...rest,
        firstTime: first_time ?? rest.time,
        ...(node === null ? {} : { node }),
        ...(via === null ? {} : { via }),
      }));
    },
    auditCount() {
      flushQuietly();
      return (countAll.get() as { n: number }).n;
    },
  };
}
