// The UKI's os-release (.osrel): what systemd-boot 252 reads from it decides the order of the A/B entries.
import { describe, expect, it } from 'vitest';
import { ukiOsRelease } from './uki';

/** os-release as systemd-boot parses it: KEY=value lines, quotes dropped. */
const fields = (text: string) => Object.fromEntries(text.trim().split('\n').map((l) => l.split(/=(.*)/s).slice(0, 2)).map(([k, v]) => [k, v!.replace(/^"|"$/g, '')]));

describe('ukiOsRelease', () => {
  it('carries no version field: systemd-boot 252 would order same-ID entries by it before their ids (the slots order by id)', () => {
    const older = fields(ukiOsRelease('aurae', '0.1.0'));
    const newer = fields(ukiOsRelease('aurae', '0.2.0'));
    // systemd-boot's entry version: IMAGE_VERSION ?: VERSION ?: VERSION_ID ?: BUILD_ID.
    for (const key of ['IMAGE_VERSION', 'VERSION', 'VERSION_ID', 'BUILD_ID']) {
      expect(older).not.toHaveProperty(key);
      expect(newer).not.toHaveProperty(key);
    }
    // The sort key (IMAGE_ID ?: ID) is the same for every release, so only the id decides.
    expect(older).not.toHaveProperty('IMAGE_ID');
    expect(older.ID).toBe('aurae');
    expect(newer.ID).toBe(older.ID);
    // The version is shown in the menu through the name only.
    expect(newer.PRETTY_NAME).toBe('Aurae node aurae 0.2.0');
  });
});
