#!/usr/bin/env node
/**
 * Packs the @aiplat npm packages (the SDK, the test kit, the core and, when present, the CLI) into
 * the registry's data folder, where its /npm/ endpoint serves them:
 *
 *   node registry/scripts/pack-sdk.mjs [--data-dir <dir>]      (default: REGISTRY_DATA_DIR or ./.aiplat-registry)
 *
 * Writes <dataDir>/npm/<file>.tgz (from `npm pack`) and records each package's name, version,
 * dependencies and integrity in <dataDir>/npm/packages.json (versions already there are kept;
 * packing the same version again replaces it). Dependencies between the workspaces stay plain
 * versions (e.g. @aiplat/testing → @aiplat/core 0.1.0): they resolve through the same scope.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const WORKSPACES = ['plugin-sdk', 'plugin-sdk/testing', 'core', 'plugin-sdk/cli'];
const FORMAT = 'aiplat-npm/1';
/** package.json fields an installer needs, copied into the packument. */
const FIELDS = ['description', 'license', 'type', 'main', 'exports', 'bin', 'engines', 'dependencies', 'optionalDependencies', 'peerDependencies', 'peerDependenciesMeta'];

function fail(message) {
  console.error(`pack-sdk: ${message}`);
  process.exit(1);
}

function parseArgs(argv) {
  let dataDir = process.env.REGISTRY_DATA_DIR?.trim() || '.aiplat-registry';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--data-dir' && argv[i + 1]) dataDir = argv[++i];
    else if (argv[i] === '--help' || argv[i] === '-h') {
      console.log('Usage: node registry/scripts/pack-sdk.mjs [--data-dir <dir>]');
      process.exit(0);
    } else fail(`unknown argument "${argv[i]}" (usage: node registry/scripts/pack-sdk.mjs [--data-dir <dir>])`);
  }
  return { dataDir: path.resolve(process.cwd(), dataDir) };
}

const { dataDir } = parseArgs(process.argv.slice(2));
const npmDir = path.join(dataDir, 'npm');
mkdirSync(npmDir, { recursive: true });

const present = WORKSPACES.filter((ws) => existsSync(path.join(ROOT, ws, 'package.json')));
const npmCli = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const result = spawnSync(npmCli, ['pack', '--json', '--pack-destination', npmDir, ...present.flatMap((ws) => ['-w', ws])], {
  cwd: ROOT,
  encoding: 'utf8',
  maxBuffer: 64 * 1024 * 1024,
  env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' },
});
if (result.status !== 0) fail(`npm pack failed (exit ${result.status}):\n${result.stderr}`);
let packed;
try {
  packed = JSON.parse(result.stdout.slice(result.stdout.indexOf('[')));
} catch (error) {
  fail(`npm pack --json printed something that is not JSON (${error.message}):\n${result.stdout.slice(0, 2000)}`);
}

const indexFile = path.join(npmDir, 'packages.json');
const index = existsSync(indexFile) ? JSON.parse(readFileSync(indexFile, 'utf8')) : { format: FORMAT, packages: {} };
if (index.format !== FORMAT) fail(`${indexFile} is not an ${FORMAT} document; move it away and run again`);

const byName = new Map(present.map((ws) => [JSON.parse(readFileSync(path.join(ROOT, ws, 'package.json'), 'utf8')).name, ws]));
const packedAt = new Date().toISOString();
for (const p of packed) {
  const ws = byName.get(p.name);
  if (!ws) fail(`npm pack reported ${p.name}, which is none of ${[...byName.keys()].join(', ')}`);
  if (!p.name.startsWith('@aiplat/')) fail(`${p.name} is outside the @aiplat scope`);
  if (!existsSync(path.join(npmDir, p.filename))) fail(`npm pack said it wrote ${p.filename}, but it is not in ${npmDir}`);
  const manifest = JSON.parse(readFileSync(path.join(ROOT, ws, 'package.json'), 'utf8'));
  const record = { name: p.name, version: p.version };
  for (const field of FIELDS) if (manifest[field] !== undefined) record[field] = manifest[field];
  record.dist = { file: p.filename, shasum: p.shasum, integrity: p.integrity, fileCount: p.entryCount, unpackedSize: p.unpackedSize };
  record.packedAt = packedAt;
  index.packages[p.name] ??= {};
  index.packages[p.name][p.version] = record;
  console.log(`${p.name}@${p.version}  ${p.filename}  ${p.size} bytes  ${p.integrity}`);
}

const tmp = `${indexFile}.${randomBytes(4).toString('hex')}.tmp`;
writeFileSync(tmp, `${JSON.stringify(index, null, 2)}\n`);
renameSync(tmp, indexFile);
console.log(`Packed ${packed.length} packages into ${npmDir}. Point npm at them with this line in .npmrc:\n  @aiplat:registry=http://<registry host>:<port>/npm/`);
