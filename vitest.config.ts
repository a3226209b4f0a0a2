import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Suites start real hubs, agents and PostgreSQL databases; each file gets its own
    // database and ports, so files run in parallel, two at a time on two cores.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 90_000,
    hookTimeout: 120_000,
    globalSetup: ['test/support/temp-root.ts'],
  },
});
