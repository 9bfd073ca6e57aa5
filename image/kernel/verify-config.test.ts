import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { mergeKconfig, parseKconfig, verifyKernelConfig } from './config-text';
import { FRAGMENT_PATH, kbuildTimestamp, kernelCacheKey, sourceDateEpoch } from './index';

const fragment = `
# a comment
CONFIG_A=y
CONFIG_B=y
CONFIG_STR="hello world"
CONFIG_NUM=42
# CONFIG_C is not set
# CONFIG_D is not set
`;

describe('verifyKernelConfig', () => {
  it('accepts a config where every option kept its value (unset = absent or "is not set")', () => {
    const config = ['CONFIG_A=y', 'CONFIG_B=y', 'CONFIG_STR="hello world"', 'CONFIG_NUM=42', '# CONFIG_C is not set', 'CONFIG_E=y'].join('\n');
    expect(verifyKernelConfig(fragment, config)).toEqual([]);
  });

  it('names every dropped or changed option', () => {
    const config = ['CONFIG_A=m', '# CONFIG_B is not set', 'CONFIG_NUM=41', 'CONFIG_C=y'].join('\n');
    expect(verifyKernelConfig(fragment, config)).toEqual([
      'CONFIG_A=y: .config has CONFIG_A=m instead',
      'CONFIG_B=y: .config has # CONFIG_B is not set instead',
      'CONFIG_STR="hello world": absent from .config (unknown symbol in this kernel, or its dependencies are not met)',
      'CONFIG_NUM=42: .config has CONFIG_NUM=41 instead',
      'CONFIG_C: requested not set, but .config has CONFIG_C=y',
    ]);
  });

  it('reports malformed fragment lines and conflicting duplicates', () => {
    const problems = verifyKernelConfig('CONFIG_A y\nCONFIG_B=y\nCONFIG_B=n\n', 'CONFIG_B=n\n');
    expect(problems).toEqual([
      'fragment line 1 is not a Kconfig assignment: "CONFIG_A y"',
      'CONFIG_B is assigned twice in the fragment (line 2: CONFIG_B=y, line 3: # CONFIG_B is not set)',
    ]);
  });
});

describe('mergeKconfig', () => {
  it('replaces every symbol the fragment mentions and keeps the rest', () => {
    const base = ['# header', 'CONFIG_A=n', '# CONFIG_B is not set', 'CONFIG_KEEP=y', '# CONFIG_C is not set', ''].join('\n');
    const merged = mergeKconfig(base, 'CONFIG_B=y\n# CONFIG_A is not set\n');
    const parsed = parseKconfig(merged).assignments.map((a) => `${a.name}=${a.value}`);
    expect(parsed).toEqual(['CONFIG_KEEP=y', 'CONFIG_C=n', 'CONFIG_B=y', 'CONFIG_A=n']);
    expect(merged.startsWith('# header\n')).toBe(true);
  });
});

describe('the committed fragment', () => {
  const text = readFileSync(FRAGMENT_PATH, 'utf8');
  const parsed = parseKconfig(text);
  const values = new Map(parsed.assignments.map((a) => [a.name.replace(/^CONFIG_/, ''), a.value]));

  it('parses cleanly and assigns each option once', () => {
    expect(parsed.invalid).toEqual([]);
    expect(verifyKernelConfig(text, text)).toEqual([]);
  });

  it('keeps the options init, auraed and the image depend on', () => {
    const required = [
      'BLK_DEV_INITRD', 'RD_ZSTD', 'BINFMT_SCRIPT', 'DEVTMPFS', 'TMPFS', 'SERIAL_8250_CONSOLE', 'VIRTIO_MMIO',
      'VIRTIO_NET', 'VIRTIO_CONSOLE', 'INPUT_EVDEV', 'ACPI_BUTTON', 'CGROUPS', 'MEMCG', 'CPUSETS', 'CFS_BANDWIDTH',
      'BLK_CGROUP', 'CGROUP_PIDS', 'SWAP', 'PSI', 'PID_NS', 'NET_NS', 'USER_NS', 'RANDOM_TRUST_CPU', 'KVM_AMD',
      'KVM_INTEL', 'VHOST_VSOCK', 'FW_CFG_SYSFS', '9P_FS', 'EFI_STUB', 'EFI_PARTITION', 'VFAT_FS', 'KERNEL_ZSTD',
      'CC_OPTIMIZE_FOR_PERFORMANCE',
    ];
    expect(required.filter((name) => values.get(name) !== 'y')).toEqual([]);
    expect(values.get('MODULES')).toBe('n');
    expect(values.get('IPV6_SIT')).toBe('n');
  });
});

describe('cache key and reproducibility inputs', () => {
  const inputs = { sourceVersion: '6.1.192-2', fragment: 'CONFIG_A=y\n', compiler: 'gcc 12.2.0', sourceDateEpoch: 1 };
  it('changes with each input', () => {
    const key = kernelCacheKey(inputs);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(kernelCacheKey({ ...inputs })).toBe(key);
    for (const change of [{ sourceVersion: '6.1.193-1' }, { fragment: 'CONFIG_A=n\n' }, { compiler: 'gcc 13' }, { sourceDateEpoch: 2 }]) {
      expect(kernelCacheKey({ ...inputs, ...change })).not.toBe(key);
    }
  });

  it('reads SOURCE_DATE_EPOCH and formats the kbuild timestamp like date -u', () => {
    expect(sourceDateEpoch({})).toBe(1767225600);
    expect(sourceDateEpoch({ SOURCE_DATE_EPOCH: '86400' })).toBe(86400);
    expect(() => sourceDateEpoch({ SOURCE_DATE_EPOCH: 'yesterday' })).toThrow(/not a whole number/);
    expect(kbuildTimestamp(1767225600)).toBe('Thu Jan  1 00:00:00 UTC 2026');
  });
});
