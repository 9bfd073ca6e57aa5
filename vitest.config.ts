import { defineConfig } from 'vitest/config';

// Three tiers (DESIGN.md §4): unit (no root, fakes), priv (root on the host), qemu (booted images).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['{image,init,guest,supervisor,aer,native}/**/*.test.ts'],
          exclude: ['**/*.priv.test.ts', 'node_modules/**', 'out/**'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'priv',
          include: ['{image,init,guest,supervisor,aer,native}/**/*.priv.test.ts'],
          testTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'qemu',
          include: ['qemu-tests/**/*.test.ts'],
          globalSetup: ['qemu-tests/global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 900_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
