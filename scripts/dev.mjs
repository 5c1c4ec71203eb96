#!/usr/bin/env node
// `npm run dev [-- --plugin <id> ...]`: the core, the web shell with hot module replacement, and
// (with --plugin) a plugin's UI remote served by its own Vite dev server, which the shell loads
// instead of the plugin's built remote — edits to the shell or to that plugin's UI show at once.
//   Shell:  http://localhost:5173/   (proxies /api and /_remotes to the core)
//   Core:   http://localhost:${PORT:-8080}/
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const args = process.argv.slice(2);
const plugins = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--plugin' && args[i + 1]) plugins.push(args[++i]);
  else if (args[i].startsWith('--plugin=')) plugins.push(args[i].slice('--plugin='.length));
  else {
    console.error(`unknown argument "${args[i]}" (usage: npm run dev -- --plugin <id> ...)`);
    process.exit(2);
  }
}

function findPlugin(id) {
  for (const parent of ['plugins', 'examples']) {
    const dir = path.join(root, parent, id);
    if (existsSync(path.join(dir, 'aiplat-plugin.json')) && existsSync(path.join(dir, 'web', 'vite.config.ts'))) return dir;
  }
  for (const parent of ['plugins', 'examples']) {
    for (const dir of existsSync(path.join(root, parent)) ? readdirSafe(path.join(root, parent)) : []) {
      const manifest = path.join(root, parent, dir, 'aiplat-plugin.json');
      if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).id === id) return path.join(root, parent, dir);
    }
  }
  return undefined;
}
function readdirSafe(dir) {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

const corePort = Number(process.env.PORT ?? 8080);
const children = [];
function start(name, command, commandArgs, env = {}) {
  const child = spawn(command, commandArgs, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  child.on('exit', (code, signal) => {
    console.log(`[dev] ${name} exited (${signal ?? code})`);
    shutdown(code ?? 1);
  });
  children.push(child);
  return child;
}
let stopping = false;
function shutdown(code) {
  if (stopping) return;
  stopping = true;
  for (const child of children) child.kill('SIGTERM');
  setTimeout(() => process.exit(code), 500);
}
process.on('SIGINT', () => shutdown(0));
process.on('SIGTERM', () => shutdown(0));

// Built remotes of the other plugins, and the shell build for the core's own / (the dev shell is on 5173).
const build = spawn(process.execPath, [path.join(root, 'scripts', 'build-ui.mjs'), '--if-stale'], { cwd: root, stdio: 'inherit' });
await new Promise((resolve) => build.on('exit', resolve));

const devRemotes = {};
let port = 5174;
const vite = path.join(root, 'node_modules', 'vite', 'bin', 'vite.js');
for (const id of plugins) {
  const dir = findPlugin(id);
  if (!dir) {
    console.error(`[dev] no plugin "${id}" with a web/vite.config.ts under plugins/ or examples/`);
    process.exit(2);
  }
  const manifest = JSON.parse(readFileSync(path.join(dir, 'aiplat-plugin.json'), 'utf8'));
  const file = path.basename(manifest.web.remoteEntry);
  devRemotes[manifest.id] = `http://localhost:${port}/${file}`;
  start(`remote ${manifest.id}`, process.execPath, [vite, '--configLoader', 'runner', '--port', String(port), '--strictPort', path.join(dir, 'web')]);
  port++;
}

start('core', process.execPath, ['--import', 'tsx', path.join(root, 'core', 'src', 'main.ts')], { PORT: String(corePort) });
start('shell', process.execPath, [vite, '--configLoader', 'runner', path.join(root, 'web-shell')], {
  AIPLAT_CORE_URL: `http://127.0.0.1:${corePort}`,
  VITE_AIPLAT_DEV_REMOTES: JSON.stringify(devRemotes),
});
console.log(`\n[dev] shell with hot reload: http://localhost:5173/  (core at http://localhost:${corePort}/)`);
if (plugins.length) console.log(`[dev] live remotes: ${Object.entries(devRemotes).map(([id, url]) => `${id} → ${url}`).join(', ')}\n`);
