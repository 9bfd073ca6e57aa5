// What a kernel build needs on the host, as data, and a pure check over an injected probe so
// the "what to install" message is unit-tested without uninstalling anything.

export type Prerequisite = { what: string; apt: string } & ({ command: string } | { header: string });

export const KERNEL_BUILD_PREREQUISITES: Prerequisite[] = [
  { what: 'make', command: 'make', apt: 'build-essential' },
  { what: 'gcc', command: 'gcc', apt: 'build-essential' },
  { what: 'flex', command: 'flex', apt: 'flex' },
  { what: 'bison', command: 'bison', apt: 'bison' },
  { what: 'bc', command: 'bc', apt: 'bc' },
  { what: 'xz (to unpack linux-source)', command: 'xz', apt: 'xz-utils' },
  { what: 'tar', command: 'tar', apt: 'tar' },
  { what: 'zstd (KERNEL_ZSTD compresses the bzImage with it)', command: 'zstd', apt: 'zstd' },
  { what: 'libelf headers (objtool)', header: 'libelf.h', apt: 'libelf-dev' },
  { what: 'openssl headers (certs/ and scripts/)', header: 'openssl/opensslv.h', apt: 'libssl-dev' },
];

export type PrerequisiteProbe = {
  hasCommand(name: string): boolean;
  hasHeader(relativePath: string): boolean;
};

/** Returns the missing prerequisites (empty when the host can build). */
export function missingPrerequisites(probe: PrerequisiteProbe, list = KERNEL_BUILD_PREREQUISITES): Prerequisite[] {
  return list.filter((p) => ('command' in p ? !probe.hasCommand(p.command) : !probe.hasHeader(p.header)));
}

/** The error text for missing prerequisites, with the exact install line. */
export function prerequisitesMessage(missing: Prerequisite[]): string {
  const packages = [...new Set(missing.map((p) => p.apt))];
  return (
    `kernel build: missing build prerequisites: ${missing.map((p) => p.what).join(', ')}.\n` +
    `Install them with:\n  sudo apt-get install -y ${packages.join(' ')}`
  );
}
