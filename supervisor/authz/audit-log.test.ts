// The audit log against the real SQLite store, as an attacker would try it: floods of refusals of every kind
// from strangers, repeated from new source ports, against a small log holding an admin's accepted mutation.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Db, migrate, openDatabase } from '../store';
import { AUDIT_MIGRATIONS, type AuditEntry, type AuditLogOptions, MAX_AUDIT_COUNT, REFUSAL_CODES, peerAddress } from './audit-log';
import { AUTHZ_MIGRATIONS, createAuthzStore } from './authz-store';

const dbs: Db[] = [];
const dirs: string[] = [];
const memory = () => {
  const db = openDatabase(':memory:');
  dbs.push(db);
  return db;
};
afterEach(() => {
  for (const db of dbs.splice(0)) if (db.open) db.close();
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A timer that fires only when the test says so: batching is asserted without waiting on the clock. */
function manualTimer() {
  const armed: Array<{ fn: () => void; ms: number; cancelled: boolean }> = [];
  return {
    armed,
    schedule: (fn: () => void, ms: number) => {
      const t = { fn, ms, cancelled: false };
      armed.push(t);
      return () => void (t.cancelled = true);
    },
    fire() {
      for (const t of armed.splice(0)) if (!t.cancelled) t.fn();
    },
    live: () => armed.filter((t) => !t.cancelled).length,
  };
}

function open(db: Db, maxRecords: number, audit: Omit<AuditLogOptions, 'maxRecords'> = {}) {
  const timer = manualTimer();
  const store = createAuthzStore(db, { auditMaxRecords: maxRecords, audit: { schedule: timer.schedule, ...audit } });
  return { store, timer };
}

let clock = 0;
const at = () => new Date(Date.UTC(2026, 0, 1) + 1000 * clock++).toISOString();

const adminAllow = (): AuditEntry => ({
  time: at(),
  identity: 'admin',
  method: 'aurae.authz.v0.AuthzService/Allow',
  code: 'OK',
  detail: 'allow nova aurae.cells.v0.CellService/*',
  peer: '10.0.0.1:40000',
});
const refusal = (over: Partial<AuditEntry> = {}): AuditEntry => ({
  time: at(),
  identity: 'mallory',
  method: 'aurae.node.v0.NodeService/Reboot',
  code: 'PERMISSION_DENIED',
  detail: 'denied: no rule allows it (default deny)',
  peer: '192.0.2.7:50000',
  ...over,
});
/** Rows as they are on disk, without the flush listAudit does first. */
const rawRows = (db: Db) => db.prepare('SELECT id, identity, code, count FROM authz_audit ORDER BY id').all() as Array<{ id: number; identity: string; code: string; count: number }>;

describe('audit log: refusals cannot evict accepted calls', () => {
  it('thousands of refusals of every kind, from ever new peers, leave an admin\'s Allow in a 20-row log', () => {
    const { store } = open(memory(), 20);
    store.appendAudit(adminAllow());
    // Distinct peers defeat aggregation: the worst case for the budget.
    for (let n = 0; n < 3000; n++) {
      const peer = `198.51.${(n >> 8) & 255}.${n & 255}:${1024 + n}`;
      // No certificate we trust, even on Health (an open method).
      store.appendAudit(refusal({ identity: '', method: 'grpc.health.v1.Health/Check', code: 'UNAUTHENTICATED', detail: 'certificate not signed by a trusted CA', peer }));
      store.appendAudit(refusal({ peer }));
      // A tenant allowed to call Stop, on cells that do not exist: failed mutations that changed nothing.
      store.appendAudit(refusal({ identity: 'nova', method: 'aurae.cells.v0.CellService/Stop', code: 'NOT_FOUND', detail: `cell "x${n}" not found`, peer }));
      store.appendAudit(refusal({ identity: 'nova', method: 'aurae.cells.v0.CellService/Allocate', code: 'INVALID_ARGUMENT', detail: 'cell.name: …', peer }));
      store.appendAudit(refusal({ identity: 'nova', method: 'aurae.authz.v0.AuthzService/Revoke', code: 'FAILED_PRECONDITION', detail: '…', peer }));
    }
    const records = store.listAudit({ limit: 1000 });
    expect(records.length).toBeLessThanOrEqual(20);
    expect(records.filter((r) => r.code !== 'OK')).toHaveLength(10);
    expect(records.filter((r) => r.code === 'OK')).toEqual([expect.objectContaining({ identity: 'admin', method: 'aurae.authz.v0.AuthzService/Allow', count: 1 })]);
    // The newest refusals are the ones kept.
    expect(records[0]).toEqual(expect.objectContaining({ code: 'FAILED_PRECONDITION', peer: '198.51.11.183:4023' }));
  });

  it('accepted calls fill their own share (the newest kept); each kind evicts only its own kind', () => {
    const { store } = open(memory(), 10);
    for (let n = 0; n < 8; n++) store.appendAudit({ ...adminAllow(), detail: `edit ${n}` });
    for (let n = 0; n < 100; n++) store.appendAudit(refusal({ peer: `203.0.113.${n}:1` }));
    const records = store.listAudit({ limit: 100 });
    expect(records.filter((r) => r.code === 'OK').map((r) => r.detail)).toEqual(['edit 7', 'edit 6', 'edit 5', 'edit 4', 'edit 3']);
    expect(records.filter((r) => r.code !== 'OK').map((r) => r.peer)).toEqual(['203.0.113.99:1', '203.0.113.98:1', '203.0.113.97:1', '203.0.113.96:1', '203.0.113.95:1']);
    expect(store.auditCount()).toBe(10);
  });

  it('outcomes that may have changed something (INTERNAL, CANCELLED, UNAVAILABLE…) count as accepted: written at once, never evicted by refusals', () => {
    const db = memory();
    const { store } = open(db, 10);
    for (const code of ['INTERNAL', 'CANCELLED', 'UNAVAILABLE', 'UNKNOWN', 'DEADLINE_EXCEEDED']) {
      expect(REFUSAL_CODES.has(code)).toBe(false);
      store.appendAudit({ ...adminAllow(), code });
    }
    expect(rawRows(db)).toHaveLength(5); // synchronously
    for (let n = 0; n < 50; n++) store.appendAudit(refusal({ peer: `203.0.113.${n}:1` }));
    expect(store.listAudit({ limit: 100 }).filter((r) => !REFUSAL_CODES.has(r.code))).toHaveLength(5);
  });

  it('a smaller bound after a restart trims each kind on its next write', () => {
    const db = memory();
    const big = open(db, 100).store;
    for (let n = 0; n < 20; n++) big.appendAudit({ ...adminAllow(), detail: `edit ${n}` });
    for (let n = 0; n < 20; n++) big.appendAudit(refusal({ peer: `203.0.113.${n}:1` }));
    big.closeAudit();
    const small = open(db, 10).store;
    small.appendAudit({ ...adminAllow(), detail: 'edit 20' });
    small.appendAudit(refusal({ peer: '203.0.113.20:1' }));
    const records = small.listAudit({ limit: 100 });
    expect(records.filter((r) => r.code === 'OK').map((r) => r.detail)).toEqual(['edit 20', 'edit 19', 'edit 18', 'edit 17', 'edit 16']);
    expect(records.filter((r) => r.code !== 'OK')).toHaveLength(5);
  });
});

describe('audit log: aggregation', () => {
  it('repeats of one refusal from one peer (any source port) are one row with a count and first/last time', () => {
    const { store } = open(memory(), 20);
    const first = refusal({ peer: '192.0.2.7:50000' });
    store.appendAudit(first);
    let last = first;
    for (let n = 1; n < 1000; n++) {
      last = refusal({ peer: `192.0.2.7:${50000 + n}`, detail: `attempt ${n}` });
      store.appendAudit(last);
    }
    const [row, ...rest] = store.listAudit({ limit: 100 });
    expect(rest).toEqual([]);
    expect(row).toEqual(expect.objectContaining({ count: 1000, firstTime: first.time, time: last.time, detail: 'attempt 999', peer: '192.0.2.7:50999' }));
  });

  it('a different identity, peer address, method, code, node or via is a row of its own', () => {
    const { store } = open(memory(), 100);
    const base = refusal();
    const variants: Array<Partial<AuditEntry>> = [
      {},
      { identity: 'eve' },
      { peer: '192.0.2.8:50000' },
      { method: 'aurae.node.v0.NodeService/Shutdown' },
      { code: 'UNAUTHENTICATED' },
      { node: 'aurae/web' },
      { via: 'aurae' },
    ];
    for (let round = 0; round < 3; round++) for (const v of variants) store.appendAudit({ ...base, time: at(), ...v });
    const records = store.listAudit({ limit: 100 });
    expect(records).toHaveLength(variants.length);
    expect(records.every((r) => r.count === 3)).toBe(true);
  });

  it('a repeat after a flush adds to the row already written, which moves to the newest position', () => {
    const db = memory();
    const { store, timer } = open(db, 20);
    const first = refusal();
    for (let n = 0; n < 5; n++) store.appendAudit(n ? refusal() : first);
    timer.fire();
    store.appendAudit(adminAllow());
    for (let n = 0; n < 7; n++) store.appendAudit(refusal());
    const records = store.listAudit({ limit: 100 });
    expect(records.map((r) => [r.code, r.count])).toEqual([
      ['PERMISSION_DENIED', 12],
      ['OK', 1],
    ]);
    expect(records[0]!.firstTime).toBe(first.time);
    expect(records[0]!.id).toBeGreaterThan(records[1]!.id);
    expect(rawRows(db)).toHaveLength(2);
  });

  it('a count stops at the uint32 maximum', () => {
    const db = memory();
    const { store } = open(db, 20);
    store.appendAudit(refusal());
    store.flushAudit();
    db.prepare('UPDATE authz_audit SET count = ?').run(MAX_AUDIT_COUNT - 1);
    for (let n = 0; n < 3; n++) {
      store.appendAudit(refusal());
      store.flushAudit();
    }
    expect(store.listAudit({ limit: 1 })[0]!.count).toBe(MAX_AUDIT_COUNT);
  });

  it('the peer address drops the port (IPv4, IPv6), and keeps anything else whole', () => {
    expect(peerAddress('192.0.2.7:50000')).toBe('192.0.2.7');
    expect(peerAddress('[2001:db8::1]:443')).toBe('[2001:db8::1]');
    expect(peerAddress('ipv4:192.0.2.7:5')).toBe('ipv4:192.0.2.7');
    expect(peerAddress('unix:/run/aurae/aurae.sock')).toBe('unix:/run/aurae/aurae.sock');
    expect(peerAddress('')).toBe('');
  });
});

describe('audit log: batches', () => {
  it('refusals wait for the timer (armed once per batch) and are written together; reads flush first', () => {
    const db = memory();
    const { store, timer } = open(db, 1000, { flushIntervalMs: 1000 });
    for (let n = 0; n < 50; n++) store.appendAudit(refusal({ peer: `203.0.113.${n}:1` }));
    expect(rawRows(db)).toEqual([]);
    expect(timer.armed.map((t) => t.ms)).toEqual([1000]);
    timer.fire();
    expect(rawRows(db)).toHaveLength(50);
    // The next refusal arms a new timer; a read writes it at once (and cancels the timer).
    store.appendAudit(refusal());
    expect(timer.live()).toBe(1);
    expect(store.listAudit({ limit: 1 })).toHaveLength(1);
    expect(rawRows(db)).toHaveLength(51);
    expect(timer.live()).toBe(0);
  });

  it('a batch is written as soon as it holds maxPending distinct rows, without the timer', () => {
    const db = memory();
    const { store } = open(db, 1000, { maxPending: 10 });
    for (let n = 0; n < 9; n++) store.appendAudit(refusal({ peer: `203.0.113.${n}:1` }));
    // Repeats of a buffered row do not grow the batch.
    for (let n = 0; n < 100; n++) store.appendAudit(refusal({ peer: '203.0.113.0:2' }));
    expect(rawRows(db)).toEqual([]);
    store.appendAudit(refusal({ peer: '203.0.113.9:1' }));
    expect(rawRows(db)).toHaveLength(10);
    // 203.0.113.0, any port: one row, moved to the last position it was seen in.
    expect(rawRows(db).map((r) => r.count)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 101, 1]);
  });

  it('an accepted call is durable when appendAudit returns, after the refusals buffered before it', () => {
    const db = memory();
    const { store } = open(db, 100);
    store.appendAudit(refusal());
    store.appendAudit(adminAllow());
    expect(rawRows(db).map((r) => r.code)).toEqual(['PERMISSION_DENIED', 'OK']);
  });

  it('close writes the last batch; later refusals are written at once', () => {
    const db = memory();
    const { store, timer } = open(db, 100);
    store.appendAudit(refusal());
    store.closeAudit();
    expect(rawRows(db)).toHaveLength(1);
    expect(timer.live()).toBe(0);
    store.appendAudit(refusal({ code: 'NOT_FOUND' }));
    expect(rawRows(db)).toHaveLength(2);
  });

  it('a crash loses at most the unflushed refusals, never an accepted call', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'audit-crash-'));
    dirs.push(dir);
    const file = path.join(dir, 'aurae.db');
    const db = openDatabase(file);
    const { store, timer } = open(db, 100);
    store.appendAudit(refusal({ detail: 'flushed' }));
    timer.fire();
    store.appendAudit(adminAllow());
    store.appendAudit(refusal({ peer: '192.0.2.99:1', detail: 'buffered' }));
    // The process dies: the buffer lived only in its memory; nothing else is closed or flushed.
    db.close();
    const reopened = openDatabase(file);
    dbs.push(reopened);
    const records = open(reopened, 100).store.listAudit({ limit: 10 });
    expect(records.map((r) => [r.code, r.detail])).toEqual([
      ['OK', 'allow nova aurae.cells.v0.CellService/*'],
      ['PERMISSION_DENIED', 'flushed'],
    ]);
  });

  it('a failed batch written by the timer is reported with how many rows were lost, and memory is freed', () => {
    const db = memory();
    const lost: number[] = [];
    const { store, timer } = open(db, 100, { onFlushError: (_err, n) => void lost.push(n) });
    for (let n = 0; n < 3; n++) store.appendAudit(refusal({ peer: `203.0.113.${n}:1` }));
    db.exec('ALTER TABLE authz_audit RENAME TO gone');
    timer.fire();
    expect(lost).toEqual([3]);
    db.exec('ALTER TABLE gone RENAME TO authz_audit');
    expect(store.listAudit({ limit: 10 })).toEqual([]);
  });
});

describe('audit log: schema and reads', () => {
  it('migrates a version-2 database: old refusals join the refusal share, old rows have count 1', () => {
    const db = memory();
    migrate(db, 'authz', AUTHZ_MIGRATIONS.slice(0, 2));
    const insert = db.prepare("INSERT INTO authz_audit (time, identity, method, code, detail, peer) VALUES ('2025-01-01T00:00:00.000Z', ?, 'a.B/C', ?, 'old', 'p')");
    insert.run('admin', 'OK');
    for (let n = 0; n < 9; n++) insert.run('mallory', 'UNAUTHENTICATED');
    const { store } = open(db, 10);
    expect(db.prepare("SELECT COUNT(*) AS n FROM schema_migrations WHERE subsystem = 'authz-audit'").get()).toEqual({ n: AUDIT_MIGRATIONS.length });
    store.appendAudit(refusal());
    const records = store.listAudit({ limit: 100 });
    expect(records.filter((r) => r.code !== 'OK')).toHaveLength(5);
    expect(records.find((r) => r.code === 'OK')).toEqual(expect.objectContaining({ identity: 'admin', count: 1, firstTime: '2025-01-01T00:00:00.000Z' }));
  });

  it('filters by identity, method (exact or Service/*), code, and pages with beforeId', () => {
    const { store } = open(memory(), 100);
    for (let n = 1; n <= 12; n++) {
      store.appendAudit({
        time: at(),
        identity: n % 2 ? 'nova' : 'admin',
        method: n % 3 ? 'aurae.node.v0.NodeService/Reboot' : 'aurae.authz.v0.AuthzService/Allow',
        code: n % 2 ? 'PERMISSION_DENIED' : 'OK',
        detail: `call ${n}`,
        peer: `127.0.0.${n}:5000`,
      });
    }
    // A method with "_" must not act as a LIKE wildcard.
    store.appendAudit({ ...adminAllow(), method: 'a.B_C/D' });
    store.appendAudit({ ...adminAllow(), method: 'a.BxC/D' });
    const ids = (q: Parameters<typeof store.listAudit>[0]) => store.listAudit(q).map((r) => r.id);
    expect(ids({ limit: 3 })).toEqual([14, 13, 12]);
    expect(ids({ limit: 100, identity: 'nova' })).toEqual([11, 9, 7, 5, 3, 1]);
    expect(ids({ limit: 100, method: 'aurae.authz.v0.AuthzService/Allow' })).toEqual([12, 9, 6, 3]);
    expect(ids({ limit: 100, method: 'aurae.authz.v0.AuthzService/*' })).toEqual([12, 9, 6, 3]);
    expect(ids({ limit: 100, method: 'a.B_C/*' })).toEqual([13]);
    expect(ids({ limit: 100, method: '*' })).toHaveLength(14);
    expect(ids({ limit: 100, code: 'OK', identity: 'admin' })).toEqual([14, 13, 12, 10, 8, 6, 4, 2]);
    expect(ids({ limit: 2, beforeId: 10 })).toEqual([9, 8]);
    expect(ids({ limit: 100, identity: 'nobody' })).toEqual([]);
  });
});
