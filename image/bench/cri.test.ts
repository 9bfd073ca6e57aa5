// The CRI bench's report (pure): medians, the RSS reading, the growth note, its BENCHMARKS.md section and how
// `--only cri` splices it in.
import { describe, expect, it } from 'vitest';
import { CRI_SECTION_BEGIN, CRI_SECTION_END, type CriBenchResult, criSection, growthNote, median, parseVmRssKiB, podsPerSecond, replaceCriSection } from './cri';
import { PODS_SECTION_BEGIN, PODS_SECTION_END } from './pods';

const result: CriBenchResult = {
  criFirstLineMs: [1200, 1000, 1100],
  criPhasesMs: [
    { sandbox: 500, create: 700, start: 900 },
    { sandbox: 400, create: 650, start: 800 },
    { sandbox: 450, create: 600, start: 850 },
  ],
  nativeFirstLineMs: [800, 900, 700],
  cri: { pods: 30, seconds: 60, rssBeforeKiB: 100 * 1024, rssAfterKiB: 102 * 1024, leftover: 0 },
  native: { pods: 60, seconds: 60, rssBeforeKiB: 102 * 1024, rssAfterKiB: 120 * 1024, leftover: 1 },
  memoryMiB: 1024,
};

describe('cri bench report', () => {
  it('takes the median of odd and even counts', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('reads VmRSS from /proc/PID/status and refuses a status without it', () => {
    expect(parseVmRssKiB('Name:\tnode\nVmPeak:\t  900000 kB\nVmRSS:\t   81234 kB\nRssAnon:\t 50000 kB\n')).toBe(81234);
    expect(() => parseVmRssKiB('Name:\tnode\n')).toThrow(/no VmRSS line/);
  });

  it('computes pods/s and says whether RSS grew beyond the noise', () => {
    expect(podsPerSecond({ pods: 30, seconds: 60 })).toBe(0.5);
    expect(podsPerSecond({ pods: 0, seconds: 0 })).toBeNaN();
    expect(growthNote(result.cri)).toBe("+2.00 MiB (+2.0 %, +68.3 KiB per pod): no growth beyond the noise of V8's heap");
    expect(growthNote({ ...result.cri, rssAfterKiB: 99 * 1024 })).toMatch(/^−1\.00 MiB \(−1\.0 %, −34\.1 KiB per pod\): no growth/);
    expect(growthNote(result.native)).toMatch(/^\+18\.00 MiB \(\+17\.6 %, \+307\.2 KiB per pod\): \*\*grows\*\*/);
  });

  it('states the start ratio, the phases, the churn rates and the leftovers', () => {
    const text = criSection(result, 'today').join('\n');
    expect(text.startsWith(CRI_SECTION_BEGIN)).toBe(true);
    expect(text.endsWith(CRI_SECTION_END)).toBe(true);
    expect(text).toContain('| 1100 | 1200, 1000, 1100 |');
    expect(text).toContain('| 800 | 800, 900, 700 |');
    expect(text).toContain('CRI ÷ native: **1.38×**'); // 1100 / 800
    // Phases: sandbox median 450; create − sandbox: 200, 250, 150 → 200; start − create: 200, 150, 250 → 200; 1100 − 850.
    expect(text).toContain('RunPodSandbox 450 ms');
    expect(text).toContain('CreateContainer 200 ms');
    expect(text).toContain("StartContainer 200 ms (hands the container to the pod's cell), then 250 ms to the first line");
    expect(text).toContain('| 30 in 60.0 s | **0.50** | 100.00 → 102.00 MiB:');
    expect(text).toContain('| 60 in 60.0 s | **1.00** | 102.00 → 120.00 MiB:');
    expect(text).toMatch(/per pod\): \*\*grows\*\*[^|]*\| 1 \|/);
    expect(text).toContain('CRI churn ÷ native churn: **0.50×**');
    expect(text).toContain('60 s each');
  });

  it('replaces its own section, else goes after the pods section, else before the notes, else at the end', () => {
    const section = [CRI_SECTION_BEGIN, 'new', CRI_SECTION_END];
    const own = `# B\n\n${CRI_SECTION_BEGIN}\nold\n${CRI_SECTION_END}\n\n## What the numbers say\n`;
    expect(replaceCriSection(own, section)).toBe(`# B\n\n${section.join('\n')}\n\n## What the numbers say\n`);
    const pods = `# B\n\n${PODS_SECTION_BEGIN}\np\n${PODS_SECTION_END}\n\n## What the numbers say\n`;
    expect(replaceCriSection(pods, section)).toBe(`# B\n\n${PODS_SECTION_BEGIN}\np\n${PODS_SECTION_END}\n\n${section.join('\n')}\n\n## What the numbers say\n`);
    expect(replaceCriSection('# B\n\n## What the numbers say\nx\n', section)).toBe(`# B\n\n${section.join('\n')}\n\n## What the numbers say\nx\n`);
    expect(replaceCriSection('# B\n', section)).toBe(`# B\n\n${section.join('\n')}\n`);
  });
});
