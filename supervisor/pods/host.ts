// The pods runtime's side effects on the node (root, real kernel): pinning a pod's namespaces, mounting and
// unmounting container root filesystems, reading the mount table, deleting crun state. An adapter so the runtime
// is unit-tested with a fake (testing.ts); nodePodHost is the real one.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { AuraeError } from '../errors';
import { DEFAULT_PATH } from '../executables';
import type { Syscalls } from '../../native';
import { mountOverlay, type OverlayMountPlan } from '../images';

const run = promisify(execFile);

export interface PodHost {
  /** New net, ipc and uts namespaces pinned at the three files (bind mounts), the hostname set and lo up. */
  pinNamespaces(files: { net: string; ipc: string; uts: string }, hostname: string): Promise<void>;
  /** Mount points currently mounted (from /proc/self/mountinfo), with their filesystem type. */
  mounts(): Map<string, string>;
  /** Mount a container's root filesystem (images' overlayMountPlan). */
  mountOverlay(plan: OverlayMountPlan): void;
  /** Unmount; a target that is not mounted is fine. */
  unmount(target: string): void;
  /** `crun delete --force` (what a killed crun left); a container crun does not know is fine. */
  crunDelete(crun: string, root: string, id: string): Promise<void>;
}

/** Decode the octal escapes of /proc/self/mountinfo ("\040" for a space). */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mount point → fstype, from mountinfo text (later mounts on the same point win). */
export function parseMountInfo(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    if (fields.length < 10 || sep < 6) continue;
    out.set(unescapeMountPath(fields[4]!), fields[sep + 1]!);
  }
  return out;
}

export function nodePodHost(syscalls: Pick<Syscalls, 'mount' | 'umount2'>, env: NodeJS.ProcessEnv = process.env): PodHost {
  const execEnv = { PATH: env.PATH ?? DEFAULT_PATH };
  return {
    async pinNamespaces(files, hostname) {
      for (const f of Object.values(files)) {
        fs.mkdirSync(path.dirname(f), { recursive: true, mode: 0o700 });
        fs.closeSync(fs.openSync(f, 'a', 0o600));
      }
      try {
        await run('unshare', [`--net=${files.net}`, `--ipc=${files.ipc}`, `--uts=${files.uts}`, '/bin/sh', '-c', 'hostname "$1" && ip link set lo up', 'aurae-pod', hostname], { env: execEnv, timeout: 30_000 });
      } catch (err) {
        const e = err as { stderr?: string; message: string };
        throw new AuraeError('FAILED_PRECONDITION', `pinning the pod's namespaces at ${path.dirname(files.net)} failed: ${(e.stderr || e.message).trim()}: does the node have unshare (busybox) and network namespaces?`);
      }
    },
    mounts: () => parseMountInfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')),
    mountOverlay: (plan) => mountOverlay(plan, syscalls),
    unmount(target) {
      try {
        syscalls.umount2(target, 0);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'EINVAL' || code === 'ENOENT') return;
        throw new AuraeError('INTERNAL', `unmounting ${target} failed (${code ?? 'error'}): ${(err as Error).message}: is a process still using it?`);
      }
    },
    async crunDelete(crun, root, id) {
      await run(crun, ['--root', root, 'delete', '--force', id], { env: execEnv, timeout: 30_000 }).catch(() => undefined);
    },
  };
}
