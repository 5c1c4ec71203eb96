/**
 * `npm run bench:install`: how long a small plugin takes from the install request to its route
 * answering, in a running core, from a local registry.
 *
 * A real registry service (registry/) and a real core (startTestCore, embedded database) in this
 * process. The package is examples/hello built, packed and signed with the author CLI (aiplat-plugin
 * pack --key), published once; each run installs it over HTTP (POST /api/v1/plugins/install),
 * polls GET /api/plugins/hello/greetings until it answers 200, then uninstalls it (untimed).
 *
 * Goal: p50 and max ≤ 3 s on this machine.
 *
 *   npm run bench:install -- [--runs 20]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startTestCore } from '@aiplat/testing';
import { generateKeyPair, publicKeyOf } from '@aiplat/plugin-sdk/package';
import { startRegistry } from '../registry/src/server.js';
import { hashToken } from '../registry/src/publishers.js';
import { REPO_ROOT, fmt, machine, percentile, table, writeResult } from './lib.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '20' }, help: { type: 'boolean', short: 'h', default: false } } });
if (values.help) {
  process.stdout.write('usage: npm run bench:install -- [--runs 20]\n');
  process.exit(0);
}
const RUNS = Number(values.runs);
const GOAL_MS = 3000;

const work = mkdtempSync(path.join(os.tmpdir(), 'aiplat-bench-install-'));
const key = generateKeyPair('bench');
const keyFile = path.join(work, 'key.json');
writeFileSync(keyFile, JSON.stringify(key));
const tgz = path.join(work, 'hello.tgz');
execFileSync(process.execPath, [path.join(REPO_ROOT, 'plugin-sdk/cli/bin/aiplat-plugin.mjs'), 'pack', path.join(REPO_ROOT, 'examples/hello'), '--out', tgz, '--key', keyFile], { stdio: 'inherit', cwd: REPO_ROOT });

const token = 'bench-publisher-token-0123456789';
const registry = await startRegistry({ dataDir: path.join(work, 'registry'), port: 0, host: '127.0.0.1', publishers: [{ name: 'bench', tokenSha256: hashToken(token), keys: [publicKeyOf(key)] }] });
const published = await fetch(`${registry.url}/api/v1/packages`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip' }, body: readFileSync(tgz) });
if (published.status !== 201) throw new Error(`publish failed: ${published.status} ${await published.text()}`);
const keysFile = path.join(work, 'trusted.json');
writeFileSync(keysFile, JSON.stringify([publicKeyOf(key)]));
const core = await startTestCore({ plugins: [], config: { registries: [registry.url], trustedKeysFile: keysFile } });

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
async function finish(operationId: string): Promise<any> {
  for (;;) {
    const { body } = await core.client.get(`/api/v1/operations/${operationId}`);
    if (body.state !== 'running') return body;
    await sleep(10);
  }
}

const times: number[] = [];
try {
  for (let run = 0; run < RUNS; run++) {
    const started = performance.now();
    const res = await core.client.post('/api/v1/plugins/install', { id: 'hello' });
    if (res.status !== 202) throw new Error(`install refused: ${res.text}`);
    for (;;) {
      const answer = await core.client.get('/api/plugins/hello/greetings');
      if (answer.status === 200) break;
      const op = await core.client.get(`/api/v1/operations/${res.body.operation.id}`);
      if (op.body.state === 'failed') throw new Error(`install failed: ${JSON.stringify(op.body.error)}`);
      await sleep(10);
    }
    times.push(performance.now() - started);
    const removed = await core.client.post('/api/v1/plugins/hello/uninstall', { keepData: false });
    await finish(removed.body.operation.id);
  }
} finally {
  await core.stop();
  await registry.close();
}

const sorted = [...times].sort((a, b) => a - b);
const p50 = percentile(sorted, 50);
const max = sorted.at(-1)!;
const m = machine();
console.log(table([
  ['install → route answers', 'p50 ms', 'max ms', 'runs', 'goal ms'],
  [`hello (${fmt(readFileSync(tgz).length / 1024, 1)} KiB package)`, fmt(p50), fmt(max), String(RUNS), String(GOAL_MS)],
]));
const file = writeResult('install', { machine: m, runs: RUNS, packageBytes: readFileSync(tgz).length, ms: { p50, max, all: times }, goalMs: GOAL_MS });
console.log(`results: ${path.relative(REPO_ROOT, file)}`);
if (max > GOAL_MS) {
  console.error(`FAIL: an install took ${fmt(max)} ms (goal ≤ ${GOAL_MS} ms)`);
  process.exitCode = 1;
}
