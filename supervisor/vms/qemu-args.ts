// Pure planner: a VmSpec (what we want) → the QEMU argv that boots it.
// One place decides machine type, devices and flags, so `npm start`, the boot tests, the benchmarks and
// auraed's VM service (spawned children) all boot the image the same way.

export type Accel = 'kvm' | 'tcg';

export interface PortForward {
  /** Port on the host's loopback (127.0.0.1). */
  hostPort: number;
  guestPort: number;
}

export interface GuestForward {
  /** An address of the user network (10.0.2.0/24) that is not the gateway or DNS, e.g. 10.0.2.100. */
  guestAddress: string;
  guestPort: number;
  /** Host command line, split by QEMU like a shell would; no commas. */
  command: string;
}

export interface VmSpec {
  /** Direct boot: kernel, initrd and command line. Ignored when `firmware` is set (UEFI boots from disk). */
  kernel: string;
  initrd: string;
  /** Kernel command line, without console= (added here to match the serial setup). */
  append: string;
  /**
   * UEFI boot (OVMF): the read-only firmware code and a writable copy of its variable store, as pflash. The
   * firmware boots the first disk's \EFI\BOOT\BOOTX64.EFI (our UKI) the way real hardware does. Needs q35 or pc.
   * `secureBoot`: the code is OVMF's SMM build (OVMF_CODE_4M.secboot.fd), which stops at once without SMM: the
   * machine gets SMM and the pflash is writable from SMM only, so the guest cannot rewrite its keys. Needs q35.
   */
  firmware?: { code: string; vars: string; secureBoot?: boolean } | null;
  memoryMiB: number;
  cpus: number;
  accel: Accel;
  /** microvm (virtio-mmio, fastest), pc (i440fx, ACPI, PCI) or q35 (PCIe; what UEFI boots use). */
  machine: 'microvm' | 'pc' | 'q35';
  /** Forwarded TCP ports on a restricted user-mode network (the guest cannot reach out). */
  forwards: PortForward[];
  /**
   * The way out of the restricted network: guest connections to guestAddress:guestPort each spawn `command`
   * on the host with the connection on its stdin/stdout (QEMU guestfwd=…-cmd:; e.g. a relay to a host port).
   */
  guestForwards?: GuestForward[];
  /** Unix socket path for QMP (the control channel), or null. */
  qmpSocket: string | null;
  /** Unix socket path for a virtio console (/dev/hvc0 in the guest), or null. */
  debugConsoleSocket: string | null;
  /** Exit QEMU instead of resetting when the guest reboots. */
  noReboot: boolean;
  /**
   * Extra raw disks (virtio-blk), in order (vda, vdb, ...). `offset`/`size`: the disk is that part of the file
   * (multiples of 512 bytes); `serial`: what the guest reads in /sys/block/vdX/serial (at most 20 characters).
   */
  disks: { path: string; readOnly: boolean; format: 'raw'; offset?: number; size?: number; serial?: string }[];
  /**
   * The TSC frequency to tell the guest kernel (tsc_early_khz=). Under TCG on a busy host the kernel's own
   * calibration against the PIT fails now and then and the boot hangs silently; microvm has no other timer to
   * calibrate against. launchVm fills it from the host when omitted for a TCG boot.
   */
  tscKhz?: number | null;
  /**
   * TCG's translated-code buffer in MiB (QEMU's default grows to 1 GiB and is most of a TCG guest's memory
   * beyond its RAM); null or unset: QEMU's default. Ignored with KVM.
   */
  tcgTbSizeMiB?: number | null;
  /** Files handed to the guest through QEMU's fw_cfg (/sys/firmware/qemu_fw_cfg/by_name/NAME/raw in the guest). */
  fwCfg?: { name: string; file: string }[];
  /**
   * Host directories shared read-only with the guest over virtio-9p (mount -t 9p -o trans=virtio TAG in the
   * guest). What is added below the directory later (files, mounts) is seen by the guest too. `writable`: the
   * guest may write (a VM-sandboxed pod's volumes; read-only binds below it stay read-only), with the owners,
   * modes and special files it sets kept as metadata, never applied to the host's files (shareFsdevOptions).
   */
  shares?: { tag: string; path: string; writable?: boolean }[];
}

export class VmSpecError extends Error {
  readonly code = 'INVALID_ARGUMENT';
}

/** Validate the parts of a spec that QEMU would otherwise reject with an obscure message. */
export function validateVmSpec(spec: VmSpec): void {
  const bad = (field: string, allowed: string): never => {
    throw new VmSpecError(`vm spec: ${field} is invalid: expected ${allowed}`);
  };
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 128 || spec.memoryMiB > 65536) bad('memoryMiB', 'an integer 128..65536');
  if (!Number.isInteger(spec.cpus) || spec.cpus < 1 || spec.cpus > 64) bad('cpus', 'an integer 1..64');
  for (const [i, f] of spec.forwards.entries()) {
    for (const key of ['hostPort', 'guestPort'] as const) {
      const port = f[key];
      if (!Number.isInteger(port) || port < 1 || port > 65535) bad(`forwards[${i}].${key}`, 'a port 1..65535');
    }
  }
  for (const [i, f] of (spec.guestForwards ?? []).entries()) {
    if (!/^10\.0\.2\.(\d{1,3})$/.test(f.guestAddress) || ['10.0.2.2', '10.0.2.3', '10.0.2.15'].includes(f.guestAddress)) {
      bad(`guestForwards[${i}].guestAddress`, 'an address of 10.0.2.0/24 other than the gateway (.2), DNS (.3) and the guest (.15)');
    }
    if (!Number.isInteger(f.guestPort) || f.guestPort < 1 || f.guestPort > 65535) bad(`guestForwards[${i}].guestPort`, 'a port 1..65535');
    if (f.command.trim() === '' || /[,\n\0]/.test(f.command)) bad(`guestForwards[${i}].command`, 'a non-empty command line without commas or newlines');
  }
  if (/[\n\0]/.test(spec.append)) bad('append', 'a single line');
  if (spec.tcgTbSizeMiB != null && (!Number.isInteger(spec.tcgTbSizeMiB) || spec.tcgTbSizeMiB < 16 || spec.tcgTbSizeMiB > 2048)) bad('tcgTbSizeMiB', 'an integer 16..2048');
  for (const [i, f] of (spec.fwCfg ?? []).entries()) {
    // QEMU reserves names outside opt/ for itself; a comma would split the option.
    if (!/^opt\/[A-Za-z0-9._/-]{1,50}$/.test(f.name)) bad(`fwCfg[${i}].name`, 'opt/NAME with letters, digits, . _ / - (at most 54 characters)');
    if (f.file.includes(',')) bad(`fwCfg[${i}].file`, 'a path without commas');
  }
  for (const [i, sh] of (spec.shares ?? []).entries()) {
    if (!/^[A-Za-z0-9_-]{1,31}$/.test(sh.tag)) bad(`shares[${i}].tag`, 'letters, digits, _ and -, at most 31 characters');
    if (!sh.path.startsWith('/') || /[,\n\0]/.test(sh.path)) bad(`shares[${i}].path`, 'an absolute path without commas or newlines');
  }
  for (const [i, d] of spec.disks.entries()) {
    if (d.path.includes(',')) bad(`disks[${i}].path`, 'a path without commas');
    for (const key of ['offset', 'size'] as const) {
      const v = d[key];
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 0 || v % 512 !== 0)) bad(`disks[${i}].${key}`, 'a non-negative multiple of 512 bytes');
    }
    if (d.serial !== undefined && !/^[A-Za-z0-9_-]{1,20}$/.test(d.serial)) bad(`disks[${i}].serial`, 'letters, digits, _ and -, at most 20 characters');
  }
  if (spec.firmware && spec.machine === 'microvm') bad('machine', 'pc or q35 with firmware (microvm has no pflash)');
  if (spec.firmware && (spec.firmware.code.includes(',') || spec.firmware.vars.includes(','))) bad('firmware', 'paths without commas');
  if (spec.firmware?.secureBoot && spec.machine !== 'q35') bad('machine', 'q35 with Secure Boot firmware (OVMF runs SMM only on q35)');
  if (spec.tscKhz != null && (!Number.isInteger(spec.tscKhz) || spec.tscKhz < 1000 || spec.tscKhz > 10_000_000)) bad('tscKhz', 'an integer 1000..10000000 (kHz)');
}

/** Mode bits of the files and directories a guest creates in a writable share, on the host (QEMU owns them). */
export const WRITABLE_SHARE_FILE_MODE = '0600';
export const WRITABLE_SHARE_DIR_MODE = '0700';

/**
 * The -fsdev options of a virtio-9p share after its path (multidevs=remap always: the shared tree spans several
 * file systems, mounts below it, whose inode numbers must not collide in the guest).
 * - Read-only: security_model=none, readonly=on: the guest sees the host's owners and modes as they are (an
 *   image's setuid binaries stay setuid in the guest) and can change nothing.
 * - Writable: security_model=mapped-file. QEMU runs as root, so with none (or passthrough) a guest's chmod u+s
 *   and chown land on the host's files as they are: a setuid-root file left in a host path for the node to trip
 *   over (QEMU 7.2 happens to refuse mknod there, but not chmod or chown). mapped-file keeps what the guest sets (owner, group, mode, device numbers,
 *   symbolic link targets) as metadata in a `.virtfs_metadata` directory beside the files (hidden from the
 *   guest), so the host only ever gets plain files of mode WRITABLE_SHARE_FILE_MODE and directories of
 *   WRITABLE_SHARE_DIR_MODE, owned by QEMU's user (root): no setuid or setgid bit, no device node, no fifo, no
 *   symbolic link. Files that were there before keep their host owner and mode (a guest chmod of them is
 *   metadata too); writes go through at once. It works on any host file system, unlike mapped-xattr (needs user
 *   xattrs, which tmpfs lacks before Linux 6.6). -runas would not do: the read-only image share must read
 *   root-only files of container images, and kubelet's host paths are root's. Measured with QEMU 7.2.
 */
export function shareFsdevOptions(share: { writable?: boolean }): string {
  return share.writable
    ? `security_model=mapped-file,fmode=${WRITABLE_SHARE_FILE_MODE},dmode=${WRITABLE_SHARE_DIR_MODE},multidevs=remap`
    : 'security_model=none,readonly=on,multidevs=remap';
}

export function qemuArgs(spec: VmSpec): string[] {
  validateVmSpec(spec);
  const machine =
    spec.machine === 'microvm'
      ? // isa-serial for an early console; rtc for wall time; no option ROMs (they only slow the boot).
        'microvm,x-option-roms=off,isa-serial=on,rtc=on'
      : spec.firmware?.secureBoot
        ? `${spec.machine},smm=on`
        : spec.machine;
  // virtio-mmio devices on microvm, virtio-pci on pc.
  const dev = (name: string) => (spec.machine === 'microvm' ? `${name}-device` : `${name}-pci`);
  const args = [
    '-M', machine,
    // -cpu max exposes RDRAND (fast getrandom at boot) and, under TCG, AMD-V for nested KVM guests.
    '-cpu', spec.accel === 'kvm' ? 'host' : 'max',
    '-accel', spec.accel === 'tcg' && spec.tcgTbSizeMiB ? `tcg,tb-size=${spec.tcgTbSizeMiB}` : spec.accel,
    '-m', String(spec.memoryMiB),
    '-smp', String(spec.cpus),
    '-nodefaults', '-no-user-config',
    '-display', 'none',
    '-serial', 'stdio',
  ];
  if (spec.firmware) {
    args.push(
      '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${spec.firmware.code}`,
      '-drive', `if=pflash,format=raw,unit=1,file=${spec.firmware.vars}`,
    );
    // Only code running in SMM may write the flash (the variable store with the keys).
    if (spec.firmware.secureBoot) args.push('-global', 'driver=cfi.pflash01,property=secure,value=on');
  } else {
    args.push('-kernel', spec.kernel, '-initrd', spec.initrd, '-append', kernelCmdline(spec));
  }
  if (spec.noReboot) args.push('-no-reboot');
  const hostfwd = spec.forwards.map((f) => `,hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`).join('');
  const guestfwd = (spec.guestForwards ?? []).map((f) => `,guestfwd=tcp:${f.guestAddress}:${f.guestPort}-cmd:${f.command}`).join('');
  // restrict=on: the guest reaches nothing outside but its guest forwards; forwarded ports still come in.
  args.push('-netdev', `user,id=net0,restrict=on${hostfwd}${guestfwd}`, '-device', `${dev('virtio-net')},netdev=net0`);
  if (spec.qmpSocket) args.push('-qmp', `unix:${spec.qmpSocket},server=on,wait=off`);
  if (spec.debugConsoleSocket) {
    args.push(
      '-device', dev('virtio-serial'),
      '-chardev', `socket,id=dbg0,path=${spec.debugConsoleSocket},server=on,wait=off`,
      '-device', 'virtconsole,chardev=dbg0',
    );
  }
  for (const f of spec.fwCfg ?? []) args.push('-fw_cfg', `name=${f.name},file=${f.file}`);
  for (const [i, sh] of (spec.shares ?? []).entries()) {
    args.push(
      '-fsdev', `local,id=fs${i},path=${sh.path},${shareFsdevOptions(sh)}`,
      '-device', `${dev('virtio-9p')},fsdev=fs${i},mount_tag=${sh.tag}`,
    );
  }
  for (const [i, disk] of spec.disks.entries()) {
    const part = `${disk.offset !== undefined ? `,offset=${disk.offset}` : ''}${disk.size !== undefined ? `,size=${disk.size}` : ''}`;
    args.push(
      '-drive', `if=none,id=disk${i},file=${disk.path},format=${disk.format},readonly=${disk.readOnly ? 'on' : 'off'}${part}`,
      '-device', `${dev('virtio-blk')},drive=disk${i}${disk.serial ? `,serial=${disk.serial}` : ''}`,
    );
  }
  return args;
}

/** The guest kernel command line: console first, then what the machine needs, then the caller's parameters. */
export function kernelCmdline(spec: VmSpec): string {
  const parts = ['console=ttyS0'];
  // microvm has no PCI bus; without pci=off the kernel prints a "PCI: Fatal" line on every boot.
  if (spec.machine === 'microvm') parts.push('pci=off');
  if (spec.tscKhz != null) parts.push(`tsc_early_khz=${spec.tscKhz}`);
  if (spec.append.trim()) parts.push(spec.append.trim());
  return parts.join(' ');
}
