// The esbuild options every program's bundle shares (image/bundle), and the snapshot bundle (snapshot.ts) too.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BuildOptions } from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));

export const BUNDLE_OPTIONS = {
  bundle: true,
  platform: 'node',
  // The image runs Node 22 (image/runtime); aer also runs on build hosts with Node 20.
  target: 'node20',
  format: 'cjs',
  minify: true,
  keepNames: true, // readable stack traces and class names in logs
  legalComments: 'none',
  // esbuild ships a native binary: `aer run` loads it from the checkout's node_modules at run time.
  external: ['*.node', 'esbuild'],
  // protobufjs is reached only through grpc-js's channelz and ORCA, which aurae does not serve (stubs/).
  alias: { '@grpc/proto-loader': path.join(here, 'stubs', 'proto-loader.cjs') },
  // import.meta.url has no CJS equivalent; give modules that use it the bundle's own URL.
  banner: { js: 'const __aurae_import_meta_url = require("url").pathToFileURL(__filename).href;' },
  define: { 'import.meta.url': '__aurae_import_meta_url' },
  logLevel: 'silent',
  metafile: false,
} as const satisfies BuildOptions;
