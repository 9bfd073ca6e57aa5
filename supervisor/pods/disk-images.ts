// The pod agent's image source inside a VM sandbox: images handed over by the parent as read-only ext4 disks
// (supervisor/images/rootfs-disk.ts) instead of pulled from a registry. The parent runs the pod here with each
// container's image given as `aurae-disk:sha256:<hex>`; this source finds the virtio-blk disk whose ext4 label is
// that digest's (rootfsDiskLabel), mounts it read-only (nodev, nosuid) under /run/aurae/pod-disks/<label>, checks
// that its /aurae-image.json names the same digest, and gives the pod runtime an ImageRecord with the image's
// config and one lower dir: the disk's /rootfs (the container's overlay adds its own upper and work dirs).
// Every other reference goes to the node's own image store. Only a spawned node (one with a parent) takes these
// references: on a root node a user must not be able to mount the node's block devices as images.
//
// Images a pod gains after its VM booted (containers created one by one: the CRI) cannot come as disks (microvm
// has no hot-plug): the parent shares a directory with the VM read-only over virtio-9p (tag VM_POD_SHARE_TAG)
// and mounts each such image's merged root filesystem in it as `<label>/rootfs`, beside `<label>/aurae-image.json`
// (the layout of a rootfs disk). A reference with no disk attached is looked up there: the share is mounted once
// (read-only, nodev, nosuid, cache=mmap: nothing cached but pages, so what the parent adds later is seen).
import fs from 'node:fs';
import path from 'node:path';
import type { Syscalls } from '../../native';
import { AuraeError } from '../errors';
import type { ImageRecord } from '../images';
import { ROOTFS_DISK_META, ROOTFS_DISK_ROOT, type RootfsDiskMeta, rootfsDiskLabel } from '../images';
import type { PodImages } from './runtime';

/** The reference prefix of a handed-over image: `aurae-disk:sha256:<64 hex>`. */
export const DISK_IMAGE_PREFIX = 'aurae-disk:';
const DISK_REF = /^aurae-disk:(sha256:[0-9a-f]{64})$/;
/** Where handed-over disks are mounted (per boot). */
export const POD_DISKS_DIR = '/run/aurae/pod-disks';
/** The virtio-9p tag of the directory a parent shares with a VM sandbox (supervisor/pods/vm-sandbox.ts). */
export const VM_POD_SHARE_TAG = 'aurae-images';
/** Where the share is mounted in the VM (per boot). */
export const POD_SHARE_DIR = '/run/aurae/pod-share';
/**
 * The virtio-9p tag of the VM sandbox's volumes: a writable share of the parent in which it binds each container's
 * host paths (vm-agent.ts nodePodVolumeShare) as `<container>/<i>`; mounted read-write in the VM at
 * POD_VOLUMES_DIR beside the image share, so containers' mounts name files there (vm-sandbox.ts childContainerSpec).
 */
export const VM_POD_VOLUMES_TAG = 'aurae-volumes';
export const POD_VOLUMES_DIR = '/run/aurae/pod-volumes';

/** The reference the pod agent resolves to the handed-over disk of `digest`. */
export function diskImageRef(digest: string): string {
  return `${DISK_IMAGE_PREFIX}${digest}`;
}

/** The digest of a disk reference; null for any other reference. */
export function parseDiskImageRef(ref: string): string | null {
  return DISK_REF.exec(ref)?.[1] ?? null;
}

/** ext4 superblock at byte 1024: magic 0xEF53 at +0x38, the 16-byte volume label at +0x78. Null: not ext2/3/4. */
export function ext4Label(superblock: Buffer): string | null {
  if (superblock.length < 0x78 + 16 || superblock.readUInt16LE(0x38) !== 0xef53) return null;
  const raw = superblock.subarray(0x78, 0x78 + 16);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? 16 : end).toString('latin1');
}

/** The side effects: block devices, their superblocks, mounts. */
export interface DiskHost {
  /** Block device names (/sys/block), e.g. ["vda", "vdb"]. */
  devices(): string[];
  /** 1024 bytes of `/dev/<name>` from byte 1024 (the ext superblock); null when unreadable. */
  superblock(name: string): Buffer | null;
  isMounted(target: string): boolean;
  /** Mount `/dev/<name>` read-only, ext4, nodev, nosuid, at `target` (created). */
  mountReadOnly(name: string, target: string): void;
  readFile(file: string): string;
  /** Mount the virtio-9p share `tag` read-only (or writable) at `target` (created); throws when there is no such share. */
  mountShare?(tag: string, target: string, writable?: boolean): void;
  exists?(file: string): boolean;
}

export function nodeDiskHost(sys: Pick<Syscalls, 'mount'>): DiskHost {
  const MS_RDONLY = 1;
  const MS_NOSUID = 2;
  const MS_NODEV = 4;
  return {
    devices: () => {
      try {
        return fs.readdirSync('/sys/block').filter((n) => /^vd[a-z]+$/.test(n));
      } catch {
        return [];
      }
    },
    superblock(name) {
      let fd: number | null = null;
      try {
        fd = fs.openSync(`/dev/${name}`, 'r');
        const buf = Buffer.alloc(1024);
        const n = fs.readSync(fd, buf, 0, 1024, 1024);
        return n === 1024 ? buf : null;
      } catch {
        return null;
      } finally {
        if (fd !== null) fs.closeSync(fd);
      }
    },
    isMounted: (target) => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === target),
    mountReadOnly(name, target) {
      fs.mkdirSync(target, { recursive: true, mode: 0o700 });
      sys.mount(`/dev/${name}`, target, 'ext4', MS_RDONLY | MS_NOSUID | MS_NODEV, null);
    },
    readFile: (file) => fs.readFileSync(file, 'utf8'),
    mountShare(tag, target, writable = false) {
      fs.mkdirSync(target, { recursive: true, mode: 0o700 });
      sys.mount(tag, target, '9p', (writable ? 0 : MS_RDONLY) | MS_NOSUID | MS_NODEV, 'trans=virtio,version=9p2000.L,msize=262144,cache=mmap');
    },
    exists: (file) => fs.existsSync(file),
  };
}

/**
 * `images` plus the handed-over disks: get/pull of an `aurae-disk:` reference mount and describe the disk;
 * lowerDirs of such a record is the disk's rootfs; retain/release of it are no-ops (the parent holds the image,
 * the disk lives as long as the VM). Every other call goes to `images`.
 */
export function withDiskImages(images: PodImages, host: DiskHost, dir: string = POD_DISKS_DIR, shareDir: string = POD_SHARE_DIR, volumesDir: string = POD_VOLUMES_DIR): PodImages {
  const records = new Map<string, { record: ImageRecord; root: string }>();
  const open = (ref: string): ImageRecord | undefined => {
    const digest = parseDiskImageRef(ref);
    if (digest === null) return undefined;
    const known = records.get(digest);
    if (known) return known.record;
    const label = rootfsDiskLabel(digest);
    const device = host.devices().find((name) => {
      const sb = host.superblock(name);
      return sb !== null && ext4Label(sb) === label;
    });
    let target: string;
    if (device) {
      target = path.join(dir, label);
    } else {
      const shared = sharedImage(label);
      if (shared === null) {
        throw new AuraeError('NOT_FOUND', `image ${ref}: no disk labelled ${label} is attached to this node, nor shared in ${VM_POD_SHARE_TAG}: disk images are handed over by the parent of a VM-sandboxed pod`);
      }
      target = shared;
    }
    if (device && !host.isMounted(target)) {
      try {
        host.mountReadOnly(device, target);
      } catch (err) {
        throw new AuraeError('FAILED_PRECONDITION', `image ${ref}: mounting /dev/${device} (${label}) read-only at ${target} failed: ${(err as Error).message}: is ext4 in the kernel?`);
      }
    }
    let meta: RootfsDiskMeta;
    try {
      meta = JSON.parse(host.readFile(path.join(target, ROOTFS_DISK_META))) as RootfsDiskMeta;
    } catch (err) {
      throw new AuraeError('FAILED_PRECONDITION', `image ${ref}: ${device ? `/dev/${device}` : target} has no readable ${ROOTFS_DISK_META}: ${(err as Error).message}: it is not a rootfs disk`);
    }
    if (meta.digest !== digest) {
      throw new AuraeError('FAILED_PRECONDITION', `image ${ref}: ${device ? `/dev/${device}` : target} (${label}) holds image ${meta.digest}, not ${digest}: the parent attached the wrong disk`);
    }
    const record: ImageRecord = { name: meta.name, tags: [], digest, configDigest: '', config: meta.config, layers: [], size: 0, pulledAt: 0 };
    records.set(digest, { record, root: path.join(target, ROOTFS_DISK_ROOT) });
    return record;
  };
  /** The image's directory in the parent's share (mounted on first use); null: no share, or not in it. */
  const sharedImage = (label: string): string | null => {
    if (!host.mountShare || !host.exists) return null;
    if (!host.isMounted(shareDir)) {
      try {
        host.mountShare(VM_POD_SHARE_TAG, shareDir);
      } catch {
        return null; // no share: this VM was booted with disks only (or is no VM sandbox)
      }
      // With it, the volumes share: before the first container that names a path in it is prepared.
      if (!host.isMounted(volumesDir)) {
        try {
          host.mountShare(VM_POD_VOLUMES_TAG, volumesDir, true);
        } catch {
          // A VM booted before volumes were shared: a container naming a path there is refused (runtime.ts writeBundle).
        }
      }
    }
    const target = path.join(shareDir, label);
    return host.exists(path.join(target, ROOTFS_DISK_META)) ? target : null;
  };
  return {
    // A bare digest of a disk already opened resolves too (the pod runtime's reconcile looks images up by digest).
    get: (ref) => open(ref) ?? records.get(ref)?.record ?? images.get(ref),
    pull: async (ref, opts) => open(ref) ?? images.pull(ref, opts),
    lowerDirs: (record) => {
      const disk = records.get(record.digest);
      return disk ? [disk.root] : images.lowerDirs(record);
    },
    retain: (digest, holder) => {
      if (!records.has(digest)) images.retain(digest, holder);
    },
    release: (holder) => images.release(holder),
  };
}
