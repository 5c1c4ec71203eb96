import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    // The web shell's browser tests (web-shell/test) run here; its sources and build do not.
    // *.services.test.ts need real PostgreSQL and Redis: they run in the server pass only.
    exclude: ['**/node_modules/**', '**/dist/**', 'web-shell/src/**', 'web-shell/dist/**', ...(process.env.AIPLAT_TEST_DATABASE === 'postgres' ? [] : ['**/*.services.test.ts'])],
    pool: 'forks',
    // Two files at a time even on a 2-core machine (vitest's default there is one): most suites
    // wait on processes, browsers and databases, not on the CPU. Each file's cores have their own
    // database (and so their own Redis namespace).
    maxWorkers: Math.max(2, availableParallelism() - 1),
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
