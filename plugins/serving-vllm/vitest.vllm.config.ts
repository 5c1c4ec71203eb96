import { defineConfig } from 'vitest/config';

// The real vLLM suite (test/*.vllm.ts): `npm run test:vllm --workspace=@aiplat-plugins/serving-vllm`.
// Its files are not *.test.ts, so the repository's own vitest run never picks them up.
export default defineConfig({
  test: {
    root: import.meta.dirname,
    include: ['test/**/*.vllm.ts'],
    pool: 'forks',
    testTimeout: 600_000,
    hookTimeout: 900_000,
  },
});
