#!/usr/bin/env node
// Smoke start under another Node.js (CI runs it with Node 24, the LTS users run):
//   node scripts/smoke-start.mjs /path/to/node
// Starts the core as `npm start` does on a fresh data folder, waits for health 200 with the
// embedded database, signs in, then SIGTERM must stop it with exit code 0.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const nodeBin = process.argv[2] ?? process.execPath;
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-smoke-'));
const password = 'smoke-test-password-1';
const child = spawn(nodeBin, ['--import', 'tsx', 'core/src/main.ts'], {
  cwd: root,
  env: { ...process.env, PORT: '0', HOST: '127.0.0.1', AIPLAT_DATA_DIR: dataDir, AIPLAT_ADMIN_PASSWORD: password, DATABASE_URL: '', REDIS_URL: '' },
  stdio: ['ignore', 'pipe', 'inherit'],
});
let out = '';
const fail = (message) => {
  console.error(`smoke-start: ${message}\n${out.slice(-3000)}`);
  child.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
  process.exit(1);
};
const timer = setTimeout(() => fail('no healthy core within 60 s'), 60_000);
const url = await new Promise((resolve) => {
  child.stdout.on('data', (chunk) => {
    out += chunk;
    const match = /"url":"(http:\/\/[^"]+)"[^\n]*aiplat core listening/.exec(out);
    if (match) resolve(match[1]);
  });
  child.on('exit', (code) => fail(`core exited with ${code} before listening`));
});
const version = await new Promise((resolve) => {
  const probe = spawn(nodeBin, ['-v']);
  let v = '';
  probe.stdout.on('data', (c) => (v += c));
  probe.on('exit', () => resolve(v.trim()));
});
const health = await (await fetch(`${url}/api/v1/health`)).json();
if (health.status !== 'ok' || health.database !== 'embedded') fail(`unexpected health ${JSON.stringify(health)}`);
const login = await fetch(`${url}/api/v1/auth/login`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ username: 'admin', password }),
});
if (login.status !== 200) fail(`sign-in answered ${login.status}`);
// The web shell (built by npm test's provisioning or npm start) and the hello remote are served.
const page = await fetch(`${url}/`);
const html = await page.text();
if (page.status !== 200 || !html.includes('<base href="/" />')) fail(`the shell answered ${page.status}: ${html.slice(0, 200)}`);
const remote = await fetch(`${url}/_remotes/hello/remoteEntry.js`);
if (remote.status !== 200) fail(`hello's remote entry answered ${remote.status}`);
clearTimeout(timer);
child.removeAllListeners('exit');
const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
child.kill('SIGTERM');
const code = await exited;
rmSync(dataDir, { recursive: true, force: true });
if (code !== 0) fail(`SIGTERM exit code ${code}`);
console.log(`smoke-start: Node ${version}: healthy (${health.database}), signed in, shell and hello remote served, stopped cleanly`);
