import { describe, expect, it } from 'vitest';
import { AuraeError } from '../errors';
import { ALL_CAPABILITIES, DEFAULT_CAPABILITIES, DEFAULT_PATH, DEFAULT_SECCOMP_DENIED, MASKED_PATHS, ociSpec, type OciSpecInput, READONLY_PATHS } from './oci-spec';

const base = (over: Partial<OciSpecInput> = {}): OciSpecInput => ({
  args: ['/bin/sh', '-c', 'echo hi'],
  env: ['PATH=/bin', 'A=b'],
  cwd: '/',
  uid: 0,
  gid: 0,
  additionalGids: [],
  rootfs: 'rootfs',
  readOnlyRootfs: false,
  terminal: false,
  namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }, { type: 'cgroup' }],
  cgroupsPath: '/aurae/web/ctr.app',
  noNewPrivileges: true,
  ...over,
});

/** The INVALID_ARGUMENT message ociSpec throws for `input`. */
function refusal(input: OciSpecInput): string {
  try {
    ociSpec(input);
  } catch (err) {
    expect(err).toBeInstanceOf(AuraeError);
    expect((err as AuraeError).code).toBe('INVALID_ARGUMENT');
    return (err as Error).message;
  }
  throw new Error('ociSpec accepted the input');
}

describe('ociSpec', () => {
  it('writes a version crun 1.8.1 accepts, the process, and the root', () => {
    const spec = ociSpec(base({ uid: 1000, gid: 1000, additionalGids: [10, 20], cwd: '/work', readOnlyRootfs: true }));
    expect(spec.ociVersion).toContain('1.0'); // crun 1.8.1 refuses versions without "1.0"
    expect(spec.process).toMatchObject({ terminal: false, args: ['/bin/sh', '-c', 'echo hi'], env: ['PATH=/bin', 'A=b'], cwd: '/work', noNewPrivileges: true });
    expect(spec.process.user).toEqual({ uid: 1000, gid: 1000, additionalGids: [10, 20] });
    expect(spec.root).toEqual({ path: 'rootfs', readonly: true });
    expect(spec.process.rlimits).toEqual([{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }]);
    expect(JSON.parse(JSON.stringify(spec))).toEqual(spec); // plain JSON, nothing lost on the way to config.json
  });

  it('adds containerd\'s PATH when env has none, and keeps no_new_privileges off only when asked', () => {
    const spec = ociSpec(base({ env: ['A=b'], noNewPrivileges: false }));
    expect(spec.process.env).toEqual([DEFAULT_PATH, 'A=b']);
    expect(spec.process.noNewPrivileges).toBe(false);
  });

  it('gives containerd\'s default capabilities in bounding/effective/permitted, none inheritable or ambient', () => {
    const caps = ociSpec(base()).process.capabilities;
    expect([...caps.bounding].sort()).toEqual([...DEFAULT_CAPABILITIES].sort());
    expect(caps.effective).toEqual(caps.bounding);
    expect(caps.permitted).toEqual(caps.bounding);
    expect(caps.inheritable).toEqual([]);
    expect(caps.ambient).toEqual([]);
    expect(caps.bounding).not.toContain('CAP_SYS_ADMIN');
  });

  it('applies capability add and drop (any case, with or without CAP_; drop wins; ALL)', () => {
    const caps = ociSpec(base({ capabilities: { add: ['net_admin', 'CAP_SYS_PTRACE', 'KILL'], drop: ['cap_net_raw', 'kill'] } })).process.capabilities.bounding;
    expect(caps).toContain('CAP_NET_ADMIN');
    expect(caps).toContain('CAP_SYS_PTRACE');
    expect(caps).not.toContain('CAP_NET_RAW');
    expect(caps).not.toContain('CAP_KILL');
    expect(ociSpec(base({ capabilities: { add: ['NET_BIND_SERVICE'], drop: ['ALL'] } })).process.capabilities.bounding).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(ociSpec(base({ capabilities: { add: ['ALL'], drop: ['SYS_ADMIN'] } })).process.capabilities.bounding).toEqual(ALL_CAPABILITIES.filter((c) => c !== 'CAP_SYS_ADMIN'));
    expect(refusal(base({ capabilities: { add: ['FLY'], drop: [] } }))).toMatch(/^capabilities\.add\[0\]: unknown capability "FLY"/);
  });

  it('masks and read-only-mounts containerd\'s paths; mounts /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys and cgroups read-only', () => {
    const spec = ociSpec(base());
    expect(spec.linux.maskedPaths).toEqual([...MASKED_PATHS]);
    expect(spec.linux.maskedPaths).toContain('/proc/kcore');
    expect(spec.linux.readonlyPaths).toEqual([...READONLY_PATHS]);
    expect(spec.linux.readonlyPaths).toContain('/proc/sys');
    const byDest = Object.fromEntries(spec.mounts.map((m) => [m.destination, m]));
    expect(Object.keys(byDest)).toEqual(['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/sys/fs/cgroup']);
    expect(byDest['/proc']!.type).toBe('proc');
    expect(byDest['/dev']!.type).toBe('tmpfs');
    expect(byDest['/dev/pts']!.type).toBe('devpts');
    expect(byDest['/dev/mqueue']!.type).toBe('mqueue');
    expect(byDest['/sys']!.options).toContain('ro');
    expect(byDest['/sys/fs/cgroup']).toMatchObject({ type: 'cgroup', options: expect.arrayContaining(['ro']) });
  });

  it('appends extra mounts and lets one replace a default by destination', () => {
    const mounts = ociSpec(base({ mounts: [{ destination: '/data', type: 'bind', source: '/var/lib/x', options: ['rbind', 'ro'] }, { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['size=1m'] }] })).mounts;
    expect(mounts.at(-1)).toEqual({ destination: '/data', type: 'bind', source: '/var/lib/x', options: ['rbind', 'ro'] });
    expect(mounts.filter((m) => m.destination === '/dev/shm')).toEqual([{ destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['size=1m'] }]);
    expect(refusal(base({ mounts: [{ destination: 'data', type: 'bind', source: '/x' }] }))).toMatch(/^mounts\[0\]\.destination: "data" is not an absolute path/);
  });

  it('lists namespaces by type, joining by path where given', () => {
    const spec = ociSpec(base({ namespaces: [{ type: 'mount' }, { type: 'pid' }, { type: 'network', path: '/proc/42/ns/net' }, { type: 'ipc', path: '/proc/42/ns/ipc' }] }));
    expect(spec.linux.namespaces).toEqual([{ type: 'mount' }, { type: 'pid' }, { type: 'network', path: '/proc/42/ns/net' }, { type: 'ipc', path: '/proc/42/ns/ipc' }]);
    expect(refusal(base({ namespaces: [{ type: 'mount' }, { type: 'user' as 'pid' }] }))).toMatch(/^namespaces\[1\]\.type: "user" is not allowed/);
    expect(refusal(base({ namespaces: [{ type: 'mount' }, { type: 'pid' }, { type: 'pid' }] }))).toMatch(/^namespaces\[2\]\.type: namespace pid is listed twice/);
    expect(refusal(base({ namespaces: [{ type: 'mount' }, { type: 'network', path: 'ns/net' }] }))).toMatch(/^namespaces\[1\]\.path: "ns\/net" is not an absolute path/);
    expect(refusal(base({ namespaces: [{ type: 'pid' }] }))).toMatch(/^namespaces: a new mount namespace is required/);
    expect(refusal(base({ namespaces: [{ type: 'mount', path: '/proc/1/ns/mnt' }] }))).toMatch(/^namespaces: the mount namespace must be a new one/);
  });

  it('sets the hostname only in a new UTS namespace', () => {
    expect(ociSpec(base({ hostname: 'web-1' })).hostname).toBe('web-1');
    const joined = ociSpec(base({ hostname: 'web-1', namespaces: [{ type: 'mount' }, { type: 'uts', path: '/proc/42/ns/uts' }] }));
    expect(joined).not.toHaveProperty('hostname');
    expect(ociSpec(base())).not.toHaveProperty('hostname');
    expect(refusal(base({ hostname: 'web-1', namespaces: [{ type: 'mount' }] }))).toMatch(/^hostname: needs a uts namespace/);
    expect(refusal(base({ hostname: 'bad_name' }))).toMatch(/^hostname: "bad_name" is not a host name/);
  });

  it('places the container at cgroupsPath and maps limits to memory.limit, pids.limit and unified cpu.weight', () => {
    const spec = ociSpec(base({ resources: { memoryMax: 64 * 1024 * 1024, pidsMax: 32, cpuWeight: 250 } }));
    expect(spec.linux.cgroupsPath).toBe('/aurae/web/ctr.app');
    expect(spec.linux.resources.memory).toEqual({ limit: 64 * 1024 * 1024 });
    expect(spec.linux.resources.pids).toEqual({ limit: 32 });
    expect(spec.linux.resources.unified).toEqual({ 'cpu.weight': '250' });
    const none = ociSpec(base()).linux.resources;
    expect(none).not.toHaveProperty('memory');
    expect(none).not.toHaveProperty('pids');
    expect(none).not.toHaveProperty('unified');
    expect(refusal(base({ resources: { cpuWeight: 10_001 } }))).toMatch(/^resources\.cpuWeight: 10001 is out of range: allowed 1\.\.10000/);
    expect(refusal(base({ resources: { memoryMax: 0 } }))).toMatch(/^resources\.memoryMax: 0 is out of range/);
    expect(refusal(base({ resources: { pidsMax: 1.5 } }))).toMatch(/^resources\.pidsMax: 1\.5 is out of range/);
  });

  it('refuses cgroup paths crun would misplace', () => {
    for (const p of ['aurae/web', '/aurae/../x', '/aurae//x', '/aurae/web/', '/']) expect(refusal(base({ cgroupsPath: p }))).toMatch(/^cgroupsPath: /);
  });

  it('denies every device but the standard ones', () => {
    const devices = ociSpec(base()).linux.resources.devices;
    expect(devices[0]).toEqual({ allow: false, access: 'rwm' });
    const allowed = devices.filter((d) => d.allow && d.access === 'rwm').map((d) => `${d.type} ${d.major}:${d.minor ?? '*'}`);
    expect(allowed).toEqual(['c 1:3', 'c 1:5', 'c 1:7', 'c 1:8', 'c 1:9', 'c 5:0', 'c 5:2', 'c 136:*']);
  });

  it('installs the default seccomp deny-list unless unconfined', () => {
    const seccomp = ociSpec(base()).linux.seccomp!;
    expect(seccomp.defaultAction).toBe('SCMP_ACT_ALLOW');
    expect(seccomp.architectures).toContain('SCMP_ARCH_X86_64');
    expect(seccomp.syscalls).toEqual([{ names: [...DEFAULT_SECCOMP_DENIED], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }]);
    for (const s of ['unshare', 'setns', 'mount', 'keyctl', 'bpf', 'kexec_load', 'reboot']) expect(seccomp.syscalls[0]!.names).toContain(s);
    expect(ociSpec(base({ seccomp: 'unconfined' })).linux).not.toHaveProperty('seccomp');
  });

  it('accepts namespaced sysctls only, with their namespace', () => {
    expect(ociSpec(base({ sysctl: { 'net.ipv4.ip_unprivileged_port_start': '0', 'kernel.shmmax': '1000' } })).linux.sysctl).toEqual({ 'net.ipv4.ip_unprivileged_port_start': '0', 'kernel.shmmax': '1000' });
    expect(refusal(base({ sysctl: { 'vm.swappiness': '10' } }))).toMatch(/^sysctl\[vm\.swappiness\]: not a namespaced sysctl/);
    expect(refusal(base({ namespaces: [{ type: 'mount' }], sysctl: { 'net.ipv4.ip_forward': '1' } }))).toMatch(/^sysctl\[net\.ipv4\.ip_forward\]: needs a network namespace/);
  });

  it('refuses process fields crun would only refuse at start', () => {
    expect(refusal(base({ args: [] }))).toMatch(/^args: required/);
    expect(refusal(base({ args: [''] }))).toMatch(/^args\[0\]: required/);
    expect(refusal(base({ cwd: 'work' }))).toMatch(/^cwd: "work" is not an absolute path: start it with "\/"/);
    expect(refusal(base({ env: ['=x'] }))).toMatch(/^env\[0\]: "=x" is not "KEY=value"/);
    expect(refusal(base({ env: ['NOEQUALS'] }))).toMatch(/^env\[0\]: /);
    expect(refusal(base({ uid: -1 }))).toMatch(/^uid: -1 is not a valid id/);
    expect(refusal(base({ gid: 2 ** 32 }))).toMatch(/^gid: /);
    expect(refusal(base({ additionalGids: [1, 1.5] }))).toMatch(/^additionalGids\[1\]: /);
    expect(refusal(base({ rootfs: '' }))).toMatch(/^rootfs: required/);
    expect(refusal(base({ args: ['/bin/sh', 'a\0b'] }))).toMatch(/^args\[1\]: must not contain NUL/);
    expect(refusal(base({ terminal: 'yes' as unknown as boolean }))).toMatch(/^terminal: must be true/);
  });
});
