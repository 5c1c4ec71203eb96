#!/usr/bin/env node
// Build and pack every first-party plugin and example (plugins/*, examples/*) with aiplat-plugin,
// in place, into one folder:
//   node plugin-sdk/cli/scripts/pack-all.mjs [--out <dir>] [--key <key pair file>]
// Default --out: dist/packages at the repository root. Stops at the first failure.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';

const repo = path.resolve(import.meta.dirname, '..', '..', '..');
const bin = path.join(repo, 'plugin-sdk', 'cli', 'bin', 'aiplat-plugin.mjs');
const args = process.argv.slice(2);
const option = (name) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
const out = path.resolve(option('--out') ?? path.join(repo, 'dist', 'packages'));
const key = option('--key');
mkdirSync(out, { recursive: true });

let packed = 0;
for (const parent of ['plugins', 'examples']) {
  for (const name of readdirSync(path.join(repo, parent)).sort()) {
    const dir = path.join(repo, parent, name);
    if (!existsSync(path.join(dir, 'aiplat-plugin.json'))) continue;
    console.error(`--- ${parent}/${name}`);
    const result = spawnSync(process.execPath, [bin, 'pack', dir, '--out', `${out}${path.sep}`, ...(key ? ['--key', key] : [])], { stdio: 'inherit', cwd: repo });
    if (result.status !== 0) process.exit(result.status ?? 1);
    packed++;
  }
}
console.error(`packed ${packed} plugins into ${out}`);
