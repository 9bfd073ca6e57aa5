// `npm test`: static checks, then the three test tiers in one vitest run (one summary at the end):
//   unit (no root, fakes) · priv (root on this host: namespaces, sockets) · qemu (the built image, booted).
// Extra arguments go to vitest, e.g. `npm test -- --project unit`.
import { $ } from 'zx';
import { REPO_ROOT } from './build';

const $$ = $({ cwd: REPO_ROOT, stdio: 'inherit', verbose: false });
const step = (s: string) => console.error(`\n== ${s}`);

async function main(): Promise<number> {
  step('typecheck (tsc --noEmit)');
  await $$`npx tsc --noEmit`;
  await $$`npx tsc --noEmit -p examples`;
  step('generated gRPC code is current');
  await $$`npx tsx supervisor/proto/check-generated.ts`;
  step('syscall addon and aurae-exec for the host (native/build/)');
  await $$`npx tsx native/build.ts`;
  // Before vitest: the priv tier's spawn test boots children from it, and the qemu tier boots it.
  step('image (npm run image; cached stages take seconds)');
  await $$`npx tsx image/build.ts`;

  const extra = process.argv.slice(2);
  const projects = ['unit', 'priv', 'qemu'];
  if (process.getuid?.() !== 0) {
    console.error('test: not root, so the priv tier (namespaces, mounts on this host) does not run; run as root for all tiers');
    projects.splice(projects.indexOf('priv'), 1);
  }
  const selected = extra.some((a) => a.startsWith('--project')) ? [] : projects.flatMap((p) => ['--project', p]);
  step(`vitest: ${projects.join(', ')}`);
  const r = await $({ cwd: REPO_ROOT, stdio: 'inherit', nothrow: true })`npx vitest run ${selected} ${extra}`;
  return r.exitCode ?? 1;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`test: ${err.message}`);
    process.exit(1);
  },
);
