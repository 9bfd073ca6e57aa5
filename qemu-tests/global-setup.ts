// Build (or reuse) the image once for the whole QEMU tier; test files read its manifest path via inject().
import type { TestProject } from 'vitest/node';
import { buildImage } from '../image/build';

declare module 'vitest' {
  export interface ProvidedContext {
    manifestPath: string;
  }
}

export default async function setup(project: TestProject): Promise<void> {
  const started = Date.now();
  const image = await buildImage({
    log: (line) => process.stderr.write(`[image ${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`),
  });
  project.provide('manifestPath', image.manifestPath);
}
