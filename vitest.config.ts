import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Multi-process tests start real servers; two workers match the 2-core CI machine.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    pool: 'forks',
    // Nodes started by the tests (in-process and as children) log warnings and errors only.
    env: { RINGKV_LOG_LEVEL: 'warn' },
  },
});
