// Condenses kbuild's output for a human: one progress line per N compiled files ("400 of 1650 files, about
// 3 min left"), every warning and error verbatim, and a tail of recent lines to show when the build fails. Pure
// apart from the injected `log` and clock, so it is unit-tested with canned make output.
//
// The total (M) is not in make's output: kbuild decides what to compile as it goes, and a dry run (make -n) of the
// whole tree costs about as much as a small build. So M comes from the build cache: how many files the last
// build of this kernel source compiled (image/kernel records it, see MakeFilesRecord), or on a first build the
// estimate below. An incremental build (objects already in the build directory) compiles only what changed, so
// M is then an upper bound.

const COMPILE_RE = /^\s*(CC|AS)\s+\S/;
const NOTEWORTHY_RE = /\b(warning|error)\b|^make(\[\d+\])?: \*\*\*|is ready|^\S+:\d+:(\d+:)? /i;

/**
 * Files a full build compiles with image/kernel/fragment.config on linux-source-6.1 (measured 2026-12: 1650
 * objects in the build directory, plus a few assembler and offset files): the guess for a first build, said as
 * "about". Rebuilds use the count recorded by the previous build instead.
 */
export const FIRST_BUILD_FILES_ESTIMATE = 1700;

/** How many files this build is expected to compile, and how sure that is. */
export type ExpectedFiles = {
  files: number;
  /**
   * recorded: the previous full build of this source compiled that many; estimate: FIRST_BUILD_FILES_ESTIMATE
   * (no build recorded yet); upper-bound: an incremental build, which compiles at most about a full build's count.
   */
  basis: 'recorded' | 'estimate' | 'upper-bound';
};

/**
 * The total to show for a build. `recordedFiles`: what the cache remembers for this source (null: nothing yet);
 * `incremental`: the build directory already holds a built kernel, so only what changed is compiled.
 */
export function expectedFiles(recordedFiles: number | null, incremental: boolean): ExpectedFiles {
  const files = recordedFiles !== null && recordedFiles > 0 ? recordedFiles : FIRST_BUILD_FILES_ESTIMATE;
  if (incremental) return { files, basis: 'upper-bound' };
  return { files, basis: recordedFiles !== null && recordedFiles > 0 ? 'recorded' : 'estimate' };
}

/**
 * One progress line: `400 of 1650 files, about 3 min left`. The time left is the files left at the rate so far
 * (from the first compiled file to now); it is left out until a rate is known.
 */
export function progressLine(compiled: number, expected: ExpectedFiles | undefined, elapsedMs: number): string {
  if (!expected) return `compiled ${compiled} files…`;
  const { files, basis } = expected;
  if (compiled >= files) {
    return basis === 'upper-bound' ? `${compiled} files (incremental build)…` : `${compiled} files (more than the ${basis === 'estimate' ? 'estimated' : 'recorded'} ${files}), nearly done…`;
  }
  const of = basis === 'recorded' ? `of ${files} files` : basis === 'estimate' ? `of about ${files} files (first build: an estimate)` : `of at most ${files} files (incremental build)`;
  // The first file started the clock: the files after it took elapsedMs.
  const rate = elapsedMs > 0 && compiled > 1 ? (compiled - 1) / elapsedMs : 0;
  if (rate <= 0) return `${compiled} ${of}…`;
  const left = formatTimeLeft((files - compiled) / rate);
  return `${compiled} ${of}, ${basis === 'upper-bound' ? 'at most' : 'about'} ${left} left`;
}

/** A time left, as precise as it can be: `40 s`, `3 min`, `1 h 05 min`. */
export function formatTimeLeft(ms: number): string {
  const s = Math.max(0, ms / 1000);
  if (s < 60) return `${Math.max(10, Math.ceil(s / 10) * 10)} s`;
  const min = Math.round(s / 60);
  if (min < 60) return `${min} min`;
  return `${Math.floor(min / 60)} h ${String(min % 60).padStart(2, '0')} min`;
}

export type MakeProgress = {
  /** Feeds one line of make's stdout or stderr (without the newline). */
  line(text: string): void;
  /** The last `tailLines` lines seen, oldest first. */
  tail(): string[];
  /** Number of compile steps (CC/AS) seen so far. */
  compiled(): number;
};

export function makeProgress(opts: {
  log: (line: string) => void;
  prefix?: string;
  every?: number;
  tailLines?: number;
  /** The total to show (expectedFiles); absent: `compiled N files…` with no total. */
  expected?: ExpectedFiles;
  /** Milliseconds, monotonic; default performance.now. */
  now?: () => number;
}): MakeProgress {
  const prefix = opts.prefix ?? 'kernel: ';
  const every = opts.every ?? 100;
  const tailLines = opts.tailLines ?? 40;
  const now = opts.now ?? (() => performance.now());
  const tail: string[] = [];
  let compiled = 0;
  let firstAt: number | null = null;
  return {
    line(text) {
      if (text.trim() === '') return;
      tail.push(text);
      if (tail.length > tailLines) tail.shift();
      if (COMPILE_RE.test(text)) {
        compiled += 1;
        // The rate counts from the first compiled file: configuring and generating headers come before it.
        firstAt ??= now();
        if (compiled % every === 0) opts.log(prefix + progressLine(compiled, opts.expected, now() - firstAt));
        return;
      }
      if (NOTEWORTHY_RE.test(text)) opts.log(prefix + text.trim());
    },
    tail: () => [...tail],
    compiled: () => compiled,
  };
}

/** Splits a byte stream into lines; call the returned function with each chunk, then `flush`. */
export function lineSplitter(onLine: (line: string) => void): { push(chunk: Buffer | string): void; flush(): void } {
  let pending = '';
  return {
    push(chunk) {
      pending += chunk.toString();
      const parts = pending.split('\n');
      pending = parts.pop() ?? '';
      for (const part of parts) onLine(part.replace(/\r$/, ''));
    },
    flush() {
      if (pending !== '') onLine(pending);
      pending = '';
    },
  };
}
