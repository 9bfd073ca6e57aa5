// The parent's side of its children's short-lived identities (CHILD_VALIDITY_DAYS): renew each running child's
// server certificate, and re-certify its spawn CA, once half its validity is gone (and at once when this node's
// own spawn CA certificate was renewed, so the children's chains carry the new one), through the parent-only
// NodeService/RenewIdentity on the child. And the pins: the router accepts, for a child, only the certificate
// it serves now by this node's record, plus the ones sent to it whose delivery was not confirmed (the child may
// have installed one before the answer was lost); a confirmed renewal drops every other, the old one included.
import { X509Certificate } from 'node:crypto';
import { pemCertificates, pemFingerprint } from '../pki/node-subtree';
import type { Logger } from '../log';

/** What a renewal carries (guest/ renewChildIdentity). */
export interface ChildRenewal {
  serverCertChainPem: string;
  serverKeyPem: string;
  spawnCaCertPem: string | null;
}

export interface ChildCertRenewerOptions {
  /** Labels of the children running now. */
  runningChildren(): string[];
  /** The server certificate (chain) the child's current run was booted with (VmRuntime.route), or null. */
  runCertOf(label: string): string | null;
  /** Mint a renewal for `label`, re-certifying `spawnCaCertPem` (null: the child has no spawn CA). */
  mint(label: string, spawnCaCertPem: string | null): Promise<ChildRenewal>;
  /** Deliver it (NodeService/RenewIdentity through the router); resolves once the child installed it. */
  send(label: string, renewal: ChildRenewal): Promise<void>;
  log: Logger;
  /** Milliseconds since the epoch (tests: a fake clock). */
  now?: () => number;
  /** How often due renewals are looked for; default 10 minutes (certificates live days). 0: never by itself. */
  checkEveryMs?: number;
}

export interface ChildCertRenewer {
  /** Record the identity minted for a child's new run (the spawn). */
  minted(label: string, serverCertChainPem: string, spawnCaCertPem: string | null): void;
  /** SHA-256 fingerprints the router accepts for `label`, whose current run booted with `runCertPem`. */
  pinsFor(label: string, runCertPem: string): string[];
  /** Renew every running child past half-life (`force`: every running child). Resolves when all attempts ended. */
  check(force?: boolean): Promise<void>;
  /**
   * Renew the running child `label` now, as check() would (after a renewal already in flight for it), for an
   * operator (VmService/Renew). Resolves with the certificate (chain) the child serves from then on; rejects when
   * this auraed did not mint the child's current run or the delivery failed (the child keeps its certificate).
   */
  renewNow(label: string): Promise<string>;
  /** Start the periodic check. */
  start(): void;
  close(): void;
}

/** Unconfirmed renewals kept acceptable per child (each failed attempt mints a new one). */
const MAX_UNCONFIRMED = 4;

interface ChildState {
  /** The certificate the run booted with: identifies the run (a restart mints a new one). */
  run: string;
  /** The certificate the child serves, as far as this node knows (confirmed). */
  current: string;
  spawnCa: string | null;
  /** Sent but not confirmed, newest last. */
  unconfirmed: string[];
  inFlight: Promise<void> | null;
}

export function createChildCertRenewer(options: ChildCertRenewerOptions): ChildCertRenewer {
  const now = options.now ?? Date.now;
  const states = new Map<string, ChildState>();
  let timer: ReturnType<typeof setInterval> | null = null;

  async function renew(label: string, state: ChildState): Promise<void> {
    const renewal = await options.mint(label, state.spawnCa);
    state.unconfirmed = [...state.unconfirmed, renewal.serverCertChainPem].slice(-MAX_UNCONFIRMED);
    await options.send(label, renewal);
    if (states.get(label) !== state) return; // the child was re-spawned meanwhile: its new run has its own state
    state.current = renewal.serverCertChainPem;
    state.spawnCa = renewal.spawnCaCertPem;
    state.unconfirmed = [];
    options.log.info('child identity renewed', { child: label, notAfter: new Date(new X509Certificate(state.current).validTo).toISOString() });
  }

  const renewer: ChildCertRenewer = {
    minted(label, serverCertChainPem, spawnCaCertPem) {
      states.set(label, { run: serverCertChainPem, current: serverCertChainPem, spawnCa: spawnCaCertPem, unconfirmed: [], inFlight: null });
    },

    pinsFor(label, runCertPem) {
      const state = states.get(label);
      if (!state || state.run !== runCertPem) return [pemFingerprint(runCertPem)];
      return [state.current, ...state.unconfirmed].map(pemFingerprint);
    },

    async check(force = false) {
      const attempts: Array<Promise<void>> = [];
      for (const label of options.runningChildren()) {
        const state = states.get(label);
        if (!state || state.run !== options.runCertOf(label)) continue; // not minted by this auraed (or a new run is starting)
        if (state.inFlight) {
          attempts.push(state.inFlight);
          continue;
        }
        if (!force && now() < halfLife(state.current)) continue;
        const attempt = renew(label, state).catch((err: unknown) => {
          options.log.warn('renewing a child identity failed; retrying at the next check', { child: label, err: (err as Error).message });
        });
        state.inFlight = attempt.finally(() => void (state.inFlight = null));
        attempts.push(state.inFlight);
      }
      await Promise.all(attempts);
    },

    async renewNow(label) {
      const state = states.get(label);
      const notMinted = () => new Error(`child "${label}" does not run with an identity this auraed minted (still starting, or re-spawned meanwhile): try again once it runs`);
      if (!state || state.run !== options.runCertOf(label)) throw notMinted();
      while (state.inFlight) await state.inFlight;
      const attempt = renew(label, state);
      state.inFlight = attempt.then(
        () => undefined,
        () => undefined,
      ).finally(() => void (state.inFlight = null));
      await attempt;
      if (states.get(label) !== state) throw notMinted();
      return state.current;
    },

    start() {
      const every = options.checkEveryMs ?? 10 * 60 * 1000;
      if (timer || every === 0) return;
      timer = setInterval(() => void renewer.check(), every);
      timer.unref();
    },

    close() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
  return renewer;
}

/**
 * When half of the validity of the chain's first-expiring part is gone (ms since the epoch): the leaf's, or that
 * of this node's own spawn CA certificate in the chain (renewed by this node's parent every day and a half), so a
 * child whose chain still carries an older one of those is renewed too, even if its own certificate is fresh.
 */
function halfLife(certChainPem: string): number {
  return Math.min(
    ...pemCertificates(certChainPem).map((cert) => {
      const from = Date.parse(cert.validFrom);
      return from + (Date.parse(cert.validTo) - from) / 2;
    }),
  );
}
