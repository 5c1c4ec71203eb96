#!/usr/bin/env node
/**
 * Bundles the GPU check (check.ts with the SDK's nvidia-smi readers, fast-xml-parser and the core's
 * local executor) into scripts/gpu-check/dist/, ignored by git and small enough to carry to a GPU
 * machine that has Node but no node_modules:
 *
 *   dist/check.mjs       the bundle
 *   dist/supervisor.mjs  the local executor's supervisor (it spawns it beside itself)
 *   dist/cuda-probe.py   the job's program (asks CUDA what it sees)
 *
 * Usage: node scripts/gpu-check/build.mjs   (uses node_modules/.bin/esbuild, which vite brings)
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const dist = path.join(here, 'dist');
const esbuild = path.join(root, 'node_modules/.bin/esbuild');
if (!existsSync(esbuild)) {
  console.error(`no esbuild at ${esbuild}: run npm install first`);
  process.exit(1);
}

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
execFileSync(
  esbuild,
  [
    path.join(here, 'check.ts'),
    '--bundle',
    '--platform=node',
    '--format=esm',
    // The oldest Node the GPU machine may have; the core itself needs 20.19.
    '--target=node18',
    `--outfile=${path.join(dist, 'check.mjs')}`,
    // Some bundled CommonJS packages call require() on Node built-ins: give the ES module one.
    "--banner:js=import { createRequire as __aiplatCreateRequire } from 'node:module'; const require = __aiplatCreateRequire(import.meta.url);",
    '--log-level=warning',
  ],
  { cwd: root, stdio: 'inherit' },
);
copyFileSync(path.join(root, 'core/src/scheduler/local/supervisor.mjs'), path.join(dist, 'supervisor.mjs'));
copyFileSync(path.join(here, 'cuda-probe.py'), path.join(dist, 'cuda-probe.py'));

const size = ['check.mjs', 'supervisor.mjs', 'cuda-probe.py'].reduce((sum, file) => sum + statSync(path.join(dist, file)).size, 0);
console.log(`built ${path.relative(root, dist)}/ (${(size / 1024).toFixed(0)} KiB): carry it with the work tree ("carry": ["scripts/gpu-check/dist"])`);
