// The upgrade core: Status, a resumable Upload into the inactive slot, Rollback. The decisions are slots.ts's
// (where a release goes, what a rollback renames) and release.ts's (is it signed by a pinned key, does each file
// match); this file orders the I/O so a refused release writes nothing to the ESP and a cut one leaves the running
// entry bootable: signature → (bytes kept on the state volume) → every sha256 → then the ESP: the partner slot
// removed, the new slot's files written (temp name, fsync, rename, fsync the folder), its UKI last.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AuraeError } from '../errors';
import type { Logger } from '../log';
import type { Esp } from './esp';
import type { PartialStore, RollbackRecord } from './partial-store';
import { fileRanges, type PinnedCert, parsePinnedCerts, type ReleaseManifest, ReleaseError, sha256Hex, verifyRelease } from './release';
import { BOOT_SLOT_STATUS_PATH, type BootedBy, type BootSlotStatus, type Entry, ESP_PATHS, fallbackReason, parseBootSlotStatus, planRollback, planUpgrade, SlotError, type Slots, slotsOf } from './slots';
import { checkChunk, checkComplete, type KeptUpload, planResume } from './upload-plan';

/** One boot entry as Status shows it; also the SDK's BootEntryInfo (aer/sdk/upgrade.ts, a type-only import). */
export interface BootEntryView {
  /** E.g. "aurae-000003-0.2.0". */
  id: string;
  version: string;
  generation: number;
  /** Its UKI's path relative to the ESP root, e.g. "EFI/Linux/aurae-000003-0.2.0+3.efi". */
  file: string;
  /** null when the entry carries no boot counter (blessed). */
  triesLeft: number | null;
  triesDone: number | null;
  running: boolean;
  bootsNext: boolean;
}

/** A pinned image-signing certificate as Status shows it (the SDK's too). */
export interface SigningCertView {
  subject: string;
  /** Hex SHA-256 of the certificate (DER). */
  fingerprint: string;
  /** Expiry, ms since the epoch. */
  notAfter: number;
  file: string;
}

export interface UpgradeStatus {
  slotted: boolean;
  /** Why the node has no slots (null when it has). */
  reason: string | null;
  entries: BootEntryView[];
  running: string | null;
  bootsNext: string | null;
  lastRollback: { from: string; to: string; reason: string; at?: number; by?: string } | null;
  partial: KeptUpload | null;
  signingCerts: SigningCertView[];
  /** Why the pinned certificates cannot be used; null when they can. */
  signingProblem: string | null;
  /** init's note on this boot's entry (BootSlotStatus.note); null when none. */
  bootNote: string | null;
  /** An upload session is open now. */
  uploading: boolean;
}

/** Upload's checked header (upgrade-service.ts validateUploadHeader). */
export interface UploadHeader {
  manifestBytes: Buffer;
  manifest: ReleaseManifest;
  signature: Buffer;
  total: number;
}

export interface UploadSession {
  readonly accepted: { resumeOffset: number; total: number; version: string; signer: string };
  /** Bytes received so far (the kept ones included). */
  readonly received: number;
  /** The stream is ended when no message arrives for this long (upgrade.uploadIdleMs): it holds the one session. */
  readonly idleMs: number;
  /** Append a chunk; INVALID_ARGUMENT when it does not continue at `received`. */
  write(offset: number, data: Uint8Array): void;
  /** The caller half-closed: check every byte came and every sha256, then write the slot. */
  finish(): Promise<{ entry: BootEntryView; removed: string[] }>;
  /** The stream broke: keep what came (synced) for the next upload of the same manifest. */
  abandon(): void;
}

export interface UpgradeCore {
  status(): UpgradeStatus;
  /** Check the signature and the slots, then open a session (one at a time). */
  beginUpload(header: UploadHeader): UploadSession;
  /** Make the other slot boot next; `by` is the caller, for Status. */
  rollback(by: string): Promise<{ bootsNext: BootEntryView; from: string }>;
}

export interface UpgradeDeps {
  esp: Esp;
  /** Unfinished uploads and the last Rollback, on the state volume. */
  partial: PartialStore;
  /** What systemd-boot said about this boot (esp.ts readBootedBy); both null on a direct-kernel boot. */
  bootedBy(): BootedBy;
  /** upgrade.signingCerts: PEM files of the pinned image-signing certificates. */
  signingCertFiles: readonly string[];
  /** Default: node:fs. */
  readFile?: (path: string) => string;
  /** What init wrote about this boot's slot (slots.ts BOOT_SLOT_STATUS_PATH); default: that file, null when absent. */
  bootSlotStatus?: () => BootSlotStatus | null;
  /** Whether this node is a spawned child (it boots from its parent's running slot). */
  child?: boolean;
  /** upgrade.uploadIdleMs: an Upload stream silent this long is ended (the service's timer), freeing the session. */
  uploadIdleMs: number;
  clock?: () => number;
  log: Logger;
}

/** The kept bytes are made durable at least every this many bytes. */
const SYNC_EVERY_BYTES = 16 * 1024 * 1024;
/** Room kept free on the ESP beyond the release (FAT metadata, the blessing's renames). */
const ESP_MARGIN_BYTES = 1024 * 1024;
/** Files are hashed and copied in pieces of this size. */
const COPY_PIECE_BYTES = 4 * 1024 * 1024;

function apiError(err: unknown): unknown {
  if (err instanceof SlotError || err instanceof ReleaseError) return new AuraeError(err.code, err.message);
  return err;
}

function view(e: Entry, slots: Slots): BootEntryView {
  return {
    id: e.id,
    version: e.version,
    generation: e.generation,
    file: e.path,
    triesLeft: e.triesLeft,
    triesDone: e.triesDone,
    running: e === slots.running,
    bootsNext: e === slots.default,
  };
}

export function createUpgradeCore(deps: UpgradeDeps): UpgradeCore {
  const { esp, partial, log } = deps;
  const clock = deps.clock ?? Date.now;
  const readFile = deps.readFile ?? ((path: string) => readFileSync(path, 'utf8'));
  const bootSlotStatus =
    deps.bootSlotStatus ??
    (() => {
      try {
        return parseBootSlotStatus(readFileSync(BOOT_SLOT_STATUS_PATH, 'utf8'));
      } catch {
        return null;
      }
    });
  /** What holds the ESP: an upload session or a rollback. */
  let busy: string | null = null;

  const currentSlots = (): Slots => slotsOf(esp.list(ESP_PATHS.entries), deps.bootedBy());

  const pinnedCerts = (): PinnedCert[] =>
    deps.signingCertFiles.flatMap((file) => {
      let pem: string;
      try {
        pem = readFile(file);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        throw new AuraeError('FAILED_PRECONDITION', `upgrade.signingCerts: cannot read ${file} (${code}): fix the node config's pinned image-signing certificates`);
      }
      try {
        return parsePinnedCerts(pem, file);
      } catch (err) {
        throw new AuraeError('FAILED_PRECONDITION', (err as Error).message);
      }
    });

  const noSlotsReason = (slots: Slots): string | null => {
    if (slots.running) return null;
    if (deps.child) return "this node is a child VM: it boots from its parent's running slot (direct kernel, no ESP of its own): upgrade the parent";
    if (slots.bootedId) return `the entry it booted (${slots.bootedId}) is no longer on the ESP (${esp.root})`;
    return 'this node did not boot through systemd-boot from a slotted ESP (a direct-kernel boot, as QEMU -kernel does, has no slots): boot it from its disk (disk.raw) under UEFI to upgrade in place';
  };

  /** The plan for `version`, refused with the reason when the node cannot take it. */
  const plan = (slots: Slots, version: string) => {
    const reason = noSlotsReason(slots);
    if (reason) throw new AuraeError('FAILED_PRECONDITION', `upgrade: ${reason}`);
    try {
      return planUpgrade(slots, version);
    } catch (err) {
      throw apiError(err);
    }
  };

  const checkRoom = (removed: string[], needed: number) => {
    const free = esp.freeBytes();
    const freed = removed.reduce((sum, p) => sum + esp.size(p), 0);
    if (free + freed >= needed + ESP_MARGIN_BYTES) return;
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    throw new AuraeError(
      'RESOURCE_EXHAUSTED',
      `upgrade: the ESP (${esp.root}) has ${mib(free)} free (${mib(free + freed)} once the other slot is removed), the release needs ${mib(needed + ESP_MARGIN_BYTES)}: build a smaller image or a disk with a larger ESP`,
    );
  };

  /** The state volume must hold the rest of the upload, and be a disk: kept in RAM, a release would fill it. */
  const checkKeepRoom = (needed: number) => {
    const room = partial.room();
    if (room.inMemory) {
      throw new AuraeError('FAILED_PRECONDITION', 'upgrade: this node keeps its state in RAM (no STATE volume is mounted: aer health aurae.storage says why), where an upload would fill its memory: fix the state volume first');
    }
    if (room.freeBytes < needed + ESP_MARGIN_BYTES) {
      const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
      throw new AuraeError('RESOURCE_EXHAUSTED', `upgrade: the state volume has ${mib(room.freeBytes)} free, the upload needs ${mib(needed + ESP_MARGIN_BYTES)}: free space on it (or grow the disk) and upload again`);
    }
  };

  /** Hash each file of the kept upload; INVALID_ARGUMENT (and the kept bytes dropped) on the first mismatch. */
  const verifyKept = async (manifest: ReleaseManifest) => {
    for (const { file, start, end } of fileRanges(manifest)) {
      const hash = await hashKept(start, end);
      if (hash !== file.sha256) {
        partial.discard();
        throw new AuraeError(
          'INVALID_ARGUMENT',
          `release ${manifest.version}: ${file.name} (${file.role}) has sha256 ${hash}, the signed manifest says ${file.sha256}: it was changed after signing or damaged on the way; nothing was written to the ESP and the received bytes were dropped`,
        );
      }
    }
  };
  async function hashKept(start: number, end: number): Promise<string> {
    const h = createHash('sha256');
    for await (const piece of keptPieces(start, end)) h.update(piece);
    return h.digest('hex');
  }
  /** The kept bytes start..end in pieces, letting the event loop run between them (100+ MB under TCG takes seconds). */
  async function* keptPieces(start: number, end: number): AsyncIterable<Buffer> {
    for (let at = start; at < end; at += COPY_PIECE_BYTES) {
      yield partial.read(at, Math.min(COPY_PIECE_BYTES, end - at));
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  return {
    status() {
      const slots = currentSlots();
      const running = slots.running;
      let lastRollback: UpgradeStatus['lastRollback'] = null;
      const fallback = fallbackReason(slots);
      if (fallback && running) {
        const from = slots.entries.find((e) => e.generation > running.generation && e.triesLeft === 0);
        lastRollback = { from: from?.id ?? '', to: running.id, reason: fallback };
      } else {
        const r: RollbackRecord | null = partial.lastRollback();
        if (r) lastRollback = { from: r.from, to: r.to, reason: `rolled back by ${r.by} (UpgradeService/Rollback)`, at: r.at, by: r.by };
      }
      let signingCerts: UpgradeStatus['signingCerts'] = [];
      let signingProblem: string | null = null;
      try {
        signingCerts = pinnedCerts().map((p) => ({ subject: p.subject, fingerprint: p.fingerprint, notAfter: Date.parse(p.cert.validTo) || 0, file: p.file }));
      } catch (err) {
        signingProblem = (err as Error).message;
      }
      return {
        slotted: running !== null,
        reason: noSlotsReason(slots),
        entries: slots.entries.map((e) => view(e, slots)),
        running: running?.id ?? null,
        bootsNext: slots.default?.id ?? null,
        lastRollback,
        partial: partial.kept(),
        signingCerts,
        signingProblem,
        bootNote: bootSlotStatus()?.note ?? null,
        uploading: busy?.startsWith('the upload') ?? false,
      };
    },

    beginUpload(header) {
      if (busy) throw new AuraeError('FAILED_PRECONDITION', `upgrade: ${busy} is in progress: wait for it to end (aer image status shows an unfinished upload's kept bytes)`);
      const { manifest, manifestBytes, total } = header;
      // Trust first: nothing of an untrusted release is accepted, not even onto the state volume.
      let signer: PinnedCert;
      try {
        signer = verifyRelease(manifestBytes, header.signature, pinnedCerts());
      } catch (err) {
        throw apiError(err);
      }
      const slots = currentSlots();
      const upgrade = plan(slots, manifest.version);
      const signatureText = `${header.signature.toString('base64')}\n`;
      checkRoom(upgrade.remove, total + manifestBytes.length + signatureText.length);

      const manifestSha256 = sha256Hex(manifestBytes);
      const resume = planResume(partial.kept(), { manifestSha256, total });
      checkKeepRoom(total - resume.offset);
      if (resume.offset === 0) partial.start({ manifestSha256, version: manifest.version, total });
      busy = `the upload of release ${manifest.version}`;
      let received = resume.offset;
      let synced = received;
      let open = true;
      const release = () => {
        open = false;
        busy = null;
      };
      log.info('upgrade: upload accepted', { version: manifest.version, signer: signer.subject, total, resumeOffset: resume.offset });

      return {
        accepted: { resumeOffset: resume.offset, total, version: manifest.version, signer: signer.subject },
        get received() {
          return received;
        },
        idleMs: deps.uploadIdleMs,
        write(offset, data) {
          if (!open) throw new AuraeError('FAILED_PRECONDITION', 'upload: the session has ended');
          checkChunk(received, total, { offset, length: data.length });
          partial.append(offset, data);
          received += data.length;
          if (received - synced >= SYNC_EVERY_BYTES) {
            partial.sync();
            synced = received;
          }
        },
        async finish() {
          try {
            partial.sync();
            checkComplete(received, total);
            await verifyKept(manifest);
            // Every byte is the signed one: now the ESP. The slots are read again (a blessing may have renamed).
            const now = currentSlots();
            const target = plan(now, manifest.version);
            checkRoom(target.remove, total + manifestBytes.length + signatureText.length);
            // Said before the first ESP change (qemu-tests/48 cuts the power on this line to test a cut write).
            log.info('upgrade: writing the ESP', { version: manifest.version, entry: target.write.id, remove: target.remove });
            try {
              await esp.writable(async () => {
                for (const path of target.remove) esp.remove(path);
                await esp.writeFile(target.write.files.manifest, [manifestBytes]);
                await esp.writeFile(target.write.files.signature, [Buffer.from(signatureText)]);
                // The UKI last: its rename makes the entry exist.
                const ranges = fileRanges(manifest).sort((a, b) => (a.file.role === 'uki' ? 1 : 0) - (b.file.role === 'uki' ? 1 : 0));
                for (const { file, start, end } of ranges) await esp.writeFile(target.write.files[file.role], keptPieces(start, end), file.sha256);
              });
            } catch (err) {
              // The running entry is never touched and a half-written slot has no UKI (no entry): the node boots as before.
              const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
              log.error('upgrade: writing the ESP failed', { version: manifest.version, err });
              throw new AuraeError(
                'INTERNAL',
                `upgrade: writing ${target.write.id} to the ESP (${esp.root}) failed (${why}): the running entry is untouched and the received bytes are kept; run the upload again (aer image status shows the ESP's entries)`,
              );
            }
            partial.discard();
            const after = currentSlots();
            const entry = after.entries.find((e) => e.id === target.write.id);
            if (!entry) throw new Error(`upgrade: ${target.write.id} was written but is not listed on the ESP`);
            log.info('upgrade: release written', { version: manifest.version, entry: entry.id, removed: target.remove });
            return { entry: view(entry, after), removed: target.remove };
          } finally {
            release();
          }
        },
        abandon() {
          if (!open) return;
          release();
          // Called from stream events and the idle timer: a failed sync is logged, never thrown (it would crash
          // auraed). The kept bytes are checked against the manifest's sha256 at the end of the next upload anyway.
          try {
            partial.sync();
          } catch (err) {
            log.warn('upgrade: upload cut; syncing the received bytes failed (the next upload checks them)', { version: manifest.version, received, total, err });
            return;
          }
          log.info('upgrade: upload cut; the received bytes are kept', { version: manifest.version, received, total });
        },
      };
    },

    async rollback(by) {
      if (busy) throw new AuraeError('FAILED_PRECONDITION', `rollback: ${busy} is in progress: wait for it to end`);
      busy = 'a rollback';
      try {
        const slots = currentSlots();
        const reason = noSlotsReason(slots);
        if (reason) throw new AuraeError('FAILED_PRECONDITION', `rollback: ${reason}`);
        let rollbackPlan;
        try {
          rollbackPlan = planRollback(slots);
        } catch (err) {
          throw apiError(err);
        }
        await esp.writable(async () => {
          for (const r of rollbackPlan.renames) esp.rename(r.from, r.to);
        });
        const from = slots.running!.id;
        partial.recordRollback({ from, to: rollbackPlan.target, at: clock(), by });
        const after = currentSlots();
        const entry = after.entries.find((e) => e.id === rollbackPlan.target);
        if (!entry) throw new Error(`rollback: ${rollbackPlan.target} was renamed but is not listed on the ESP`);
        log.info('upgrade: rollback', { from, to: entry.id, by });
        return { bootsNext: view(entry, after), from };
      } finally {
        busy = null;
      }
    },
  };
}
