#!/usr/bin/env node
// Build the web shell and every plugin UI remote (plugins/*/web, examples/*/web) for production.
//   node scripts/build-ui.mjs              build everything
//   node scripts/build-ui.mjs --if-stale   build only what changed since its last build (npm start runs this)
//   node scripts/build-ui.mjs hello        build only the named plugin's remote (or "shell")
// A build is stale when a file it is made of (its sources, the SDK's web part and Vite preset, the
// lockfile) changed; the fingerprint is kept in <outDir>/.aiplat-build.json. Built .js, .css, .json
// and .html files are precompressed (.br, .gz) for the core's static server.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const args = process.argv.slice(2);
const ifStale = args.includes('--if-stale');
const only = args.filter((a) => !a.startsWith('--'));

function targets() {
  const shellDist = path.join(root, 'web-shell', 'dist');
  const list = [{ name: 'shell', webDir: path.join(root, 'web-shell'), outDir: shellDist, entry: path.join(shellDist, 'index.html'), sources: [path.join(root, 'web-shell')] }];
  for (const parent of ['plugins', 'examples']) {
    const dir = path.join(root, parent);
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir).sort()) {
      const pluginDir = path.join(dir, name);
      const manifestFile = path.join(pluginDir, 'aiplat-plugin.json');
      const webDir = path.join(pluginDir, 'web');
      if (!existsSync(manifestFile) || !existsSync(path.join(webDir, 'vite.config.ts'))) continue;
      const manifest = JSON.parse(readFileSync(manifestFile, 'utf8'));
      if (!manifest.web?.remoteEntry) continue;
      const entry = path.resolve(pluginDir, manifest.web.remoteEntry);
      list.push({ name: manifest.id, webDir, outDir: path.dirname(entry), entry, sources: [webDir, manifestFile] });
    }
  }
  return list;
}

const shared = [path.join(root, 'plugin-sdk', 'web'), path.join(root, 'plugin-sdk', 'vite'), path.join(root, 'plugin-sdk', 'src', 'manifest.ts'), path.join(root, 'package-lock.json')];

function walk(entry, outDir, hash) {
  if (!existsSync(entry)) return;
  const stat = statSync(entry);
  if (stat.isFile()) {
    hash.update(`${path.relative(root, entry)}\0${stat.size}\0${stat.mtimeMs}\n`);
    return;
  }
  for (const name of readdirSync(entry).sort()) {
    const child = path.join(entry, name);
    if (name === 'node_modules' || name === 'test' || name.startsWith('.') || child === outDir || name === 'dist') continue;
    walk(child, outDir, hash);
  }
}

function fingerprint(target) {
  const hash = createHash('sha256');
  for (const entry of [...target.sources, ...shared]) walk(entry, target.outDir, hash);
  return hash.digest('hex');
}

function precompress(dir) {
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) {
      precompress(file);
      continue;
    }
    if (!/\.(js|mjs|css|json|html|svg)$/.test(name)) continue;
    const data = readFileSync(file);
    if (data.length < 1024) continue;
    writeFileSync(`${file}.gz`, gzipSync(data, { level: 9 }));
    writeFileSync(`${file}.br`, brotliCompressSync(data, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }));
  }
}

// One build at a time per checkout (two processes writing one dist folder would mix their files).
const lockDir = path.join(root, 'node_modules', '.aiplat-build-ui.lock');
async function lock() {
  for (let waited = 0; ; waited += 200) {
    try {
      mkdirSync(lockDir);
      writeFileSync(path.join(lockDir, 'pid'), String(process.pid));
      return;
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
      let holder = 0;
      try {
        holder = Number(readFileSync(path.join(lockDir, 'pid'), 'utf8'));
      } catch {
        /* being written */
      }
      let alive = false;
      try {
        if (holder) {
          process.kill(holder, 0);
          alive = true;
        }
      } catch {
        alive = false;
      }
      if (holder && !alive) rmSync(lockDir, { recursive: true, force: true });
      if (waited === 0) console.log('[build-ui] waiting for another build to finish');
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
await lock();
process.on('exit', () => rmSync(lockDir, { recursive: true, force: true }));

// Always a production build, even when started from a test runner: under vitest's VITEST or
// NODE_ENV=test, @module-federation/vite emits no remoteEntry.js (seen with 1.23.8).
for (const key of Object.keys(process.env)) if (key === 'VITEST' || key.startsWith('VITEST_')) delete process.env[key];
process.env.NODE_ENV = 'production';

const { build } = await import('vite');
let built = 0;
for (const target of targets()) {
  if (only.length > 0 && !only.includes(target.name)) continue;
  const stampFile = path.join(target.outDir, '.aiplat-build.json');
  const print = fingerprint(target);
  if (ifStale && existsSync(stampFile) && JSON.parse(readFileSync(stampFile, 'utf8')).fingerprint === print) continue;
  const started = Date.now();
  process.stdout.write(`[build-ui] ${target.name} … `);
  await build({ root: target.webDir, configLoader: 'runner', logLevel: 'warn', mode: 'production' });
  // Never stamp an incomplete build as fresh: --if-stale would keep it.
  if (!existsSync(target.entry)) throw new Error(`the ${target.name} build produced no ${path.relative(root, target.entry)}`);
  precompress(target.outDir);
  writeFileSync(stampFile, JSON.stringify({ fingerprint: print, builtAt: new Date().toISOString() }));
  console.log(`${((Date.now() - started) / 1000).toFixed(1)} s`);
  built++;
}
if (!ifStale || built > 0) console.log(`[build-ui] ${built} built`);
