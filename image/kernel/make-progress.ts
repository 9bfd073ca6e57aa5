// Condenses kbuild's output for a human: one progress line per N compiled files, every warning
// and error verbatim, and a tail of recent lines to show when the build fails. Pure apart from
// the injected `log`, so it is unit-tested with canned make output.

const COMPILE_RE = /^\s*(CC|AS)\s+\S/;
const NOTEWORTHY_RE = /\b(warning|error)\b|^make(\[\d+\])?: \*\*\*|is ready|^\S+:\d+:(\d+:)? /i;

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
}): MakeProgress {
  const prefix = opts.prefix ?? 'kernel: ';
  const every = opts.every ?? 100;
  const tailLines = opts.tailLines ?? 40;
  const tail: string[] = [];
  let compiled = 0;
  return {
    line(text) {
      if (text.trim() === '') return;
      tail.push(text);
      if (tail.length > tailLines) tail.shift();
      if (COMPILE_RE.test(text)) {
        compiled += 1;
        if (compiled % every === 0) opts.log(`${prefix}compiled ${compiled} files…`);
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
