// The pods bench's report (pure): its BENCHMARKS.md section and how `--only pods` splices it in.
import { describe, expect, it } from 'vitest';
import { PODS_SECTION_BEGIN, PODS_SECTION_END, type PodsBenchResult, podsSection, replacePodsSection } from './pods';

const result: PodsBenchResult = {
  pull: { imageBytes: 14_000_000, layers: 4, oursS: [1.0, 1.2, 1.1], skopeoUmociS: [1.0, 1.0, 1.0] },
  guest: {
    podFirstLineMs: [900, 800, 1000],
    rpcMs: [20, 10, 30],
    phasesMs: [
      { prepare: 300, launch: 100, crun: 250 },
      { prepare: 320, launch: 90, crun: 240 },
      { prepare: 310, launch: 110, crun: 260 },
    ],
    crunFirstLineMs: [200, 190, 210],
    cellPodStartMs: [700, 600, 800],
    vmPods: { startMs: [30_000, 21_000], firstLineMs: [31_000, 21_500], runReturnedMs: [29_000, 20_000] },
    memory: {
      pods: 10,
      auraedBefore: { rssKiB: 80 * 1024, pssKiB: 60 * 1024 },
      auraedAfter: { rssKiB: 85 * 1024, pssKiB: 64 * 1024 },
      podCgroupsKiB: 10 * 1024,
      memTotalKiB: 1000 * 1024,
      memAvailableBeforeKiB: 700 * 1024,
      memAvailableAfterKiB: 680 * 1024,
    },
  },
};

describe('pods bench report', () => {
  it('states the ratios against the targets and how pods per node is estimated', () => {
    const text = podsSection(result, 'today').join('\n');
    expect(text.startsWith(PODS_SECTION_BEGIN)).toBe(true);
    expect(text.endsWith(PODS_SECTION_END)).toBe(true);
    expect(text).toContain('**1.10×** (target ≤ 1.2×)'); // 1.1 s / 1.0 s
    expect(text).toContain('Ratio: **4.50×**; without the RPC round trip **4.40×**'); // 900 / 200, (900 - 20) / 200
    expect(text).toContain('**0.50 MiB per pod** (target ≤ 1 MiB)');
    // Per pod: max(cgroups 1 MiB + auraed 0.5 MiB, MemAvailable's drop 2 MiB) = 2 MiB; 700 MiB / 2 MiB = 350.
    expect(text).toContain('**~350** on this 1000.00 MiB node');
    expect(text).toContain('| 700 | 700, 600, 800 |');
    expect(text).toMatch(/container_created: pin namespaces.* \| 310 \|/);
    expect(text).toMatch(/the rest: .* \| 250 \|/); // 900 - median(650, 650, 680)
    // VM pods beside the cell pods: each run's row, the ratio of the last run to the cells' median (21000 / 700).
    expect(text).toContain("| vm, run 1 (builds the image's rootfs disk, mke2fs -d) | 30000 | 31000 | 29000 |");
    expect(text).toContain('| vm, run 2 (rootfs disk reused) | 21000 | 21500 | 20000 |');
    expect(text).toContain('| cell (median of 3 / 3; image stored) | 700 | 900 | |');
    expect(text).toContain('(the last VM run, to the running state): **30.0×**');
  });

  it('replaces its own section, else goes before the notes, else at the end', () => {
    const section = [PODS_SECTION_BEGIN, 'new', PODS_SECTION_END];
    expect(replacePodsSection(`# B\n\n${PODS_SECTION_BEGIN}\nold\n${PODS_SECTION_END}\n\n## What the numbers say\n`, section)).toBe(
      `# B\n\n${PODS_SECTION_BEGIN}\nnew\n${PODS_SECTION_END}\n\n## What the numbers say\n`,
    );
    expect(replacePodsSection('# B\n\n## What the numbers say\nx\n', section)).toBe(`# B\n\n${section.join('\n')}\n\n## What the numbers say\nx\n`);
    expect(replacePodsSection('# B\n', section)).toBe(`# B\n\n${section.join('\n')}\n`);
  });
});
