/**
 * `npm run bench:datasets`: the datasets plugin under load, on a real core in its own process
 * (embedded database, folder storage, the datasets plugin only).
 *
 * 1. A 2 GiB upload through the API: one tus upload (create, then one PATCH streaming 2 GiB, as
 *    a browser's tus client sends it), then finishing the commit. Throughput in MB/s from the
 *    create to the version, and the core's RSS (VmRSS, sampled every 50 ms) above its level
 *    just before the upload. Goal: RSS growth ≤ 100 MB.
 * 2. A 10,000-file dataset (imported once from a server folder), then a new version where one file
 *    changed: open a commit, upload the one file, finish. Time of that, and the bytes written to
 *    storage (the folder backend's files) and to the whole data folder (database included).
 *    Goal: only the changed file's bytes are stored.
 *
 *   npm run bench:datasets -- [--gib 2] [--files 10000]
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ADMIN_PASSWORD, coreEnv, fmt, freePort, machine, makeTempDataDir, REPO_ROOT, spawnNode, stopGracefully, table, waitFor200, writeResult } from './lib.js';

const { values } = parseArgs({
  options: { gib: { type: 'string', default: '2' }, files: { type: 'string', default: '10000' }, help: { type: 'boolean', short: 'h', default: false } },
});
if (values.help) {
  process.stdout.write('usage: npm run bench:datasets -- [--gib 2] [--files 10000]\n');
  process.exit(0);
}
const UPLOAD_BYTES = Math.round(Number(values.gib) * 1024 ** 3);
const FILES = Number(values.files);
const RSS_GOAL_MB = 100;
const API = '/api/plugins/datasets';

const dataDir = makeTempDataDir('datasets');
const importRoot = makeTempDataDir('datasets-import');
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const proc = spawnNode('core/src/main.ts', coreEnv({ port, dataDir, pluginDirs: path.join(REPO_ROOT, 'plugins', 'datasets'), logLevel: 'warn' }, { AIPLAT_ACCESS_TOKEN_TTL: '86400' }));
await waitFor200(`${base}/api/v1/health`, proc, { timeoutMs: 120_000 });
const login = await fetch(`${base}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }) });
const token = ((await login.json()) as { accessToken: string }).accessToken;
const auth = { authorization: `Bearer ${token}` };

async function api<T = any>(method: string, url: string, body?: unknown): Promise<T> {
  const res = await fetch(`${base}${API}${url}`, { method, headers: { ...auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body !== undefined ? JSON.stringify(body) : undefined });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${url} answered ${res.status}: ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Bytes of the files under `dir`; `content` leaves out the folder backend's metadata sidecars (`…@meta.json`). */
function folderBytes(dir: string, options: { content?: boolean } = {}): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += folderBytes(p, options);
    else if (e.isFile() && !(options.content && e.name.endsWith('@meta.json'))) total += statSync(p).size;
  }
  return total;
}

/** tus: create an upload and send `length` bytes from `chunks` in one streamed PATCH. */
async function tusUpload(commit: string, filePath: string, length: number, sha256: string, chunks: () => AsyncIterable<Uint8Array>): Promise<void> {
  const meta = { commit, path: filePath, sha256 };
  const created = await fetch(`${base}${API}/uploads`, {
    method: 'POST',
    headers: { ...auth, 'tus-resumable': '1.0.0', 'upload-length': String(length), 'upload-metadata': Object.entries(meta).map(([k, v]) => `${k} ${Buffer.from(v).toString('base64')}`).join(',') },
  });
  if (created.status !== 201) throw new Error(`tus create answered ${created.status}: ${await created.text()}`);
  const location = created.headers.get('location')!;
  const body = ReadableStream.from(chunks());
  const patched = await fetch(new URL(location, base), {
    method: 'PATCH',
    headers: { ...auth, 'tus-resumable': '1.0.0', 'upload-offset': '0', 'content-type': 'application/offset+octet-stream', 'content-length': String(length) },
    body,
    duplex: 'half',
  } as RequestInit);
  if (patched.status !== 204) throw new Error(`tus PATCH answered ${patched.status}: ${await patched.text()}`);
}

const results: Record<string, unknown> = { machine: machine() };
try {
  // ---- 1. a big upload ----
  const block = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0, i);
  const blocks = Math.ceil(UPLOAD_BYTES / block.length);
  const pieceOf = (i: number) => (i === blocks - 1 ? block.subarray(0, UPLOAD_BYTES - i * block.length) : block);
  const hash = createHash('sha256');
  for (let i = 0; i < blocks; i++) hash.update(pieceOf(i));
  const bigSha = hash.digest('hex');

  const big = await api('POST', '/datasets', { name: 'bench-big' });
  // Warm up the upload path with a small file, then measure from a settled RSS.
  const warm = await api('POST', `/datasets/${big.id}/commits`, {});
  await tusUpload(warm.id, 'warm.bin', block.length, createHash('sha256').update(block).digest('hex'), async function* () {
    yield block;
  });
  await api('POST', `/commits/${warm.id}/finish`, {});
  (global as { gc?: () => void }).gc?.();
  await new Promise((r) => setTimeout(r, 1000));
  const rssBefore = rssBytes(proc.pid);
  let rssMax = rssBefore;
  const sampler = setInterval(() => (rssMax = Math.max(rssMax, rssBytes(proc.pid))), 50);
  const started = performance.now();
  const commit = await api('POST', `/datasets/${big.id}/commits`, {});
  await tusUpload(commit.id, 'big.bin', UPLOAD_BYTES, bigSha, async function* () {
    for (let i = 0; i < blocks; i++) yield pieceOf(i);
  });
  const uploaded = performance.now();
  const version = await api('POST', `/commits/${commit.id}/finish`, { message: 'big' });
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  rssMax = Math.max(rssMax, rssBytes(proc.pid));
  if (version.totalSize !== UPLOAD_BYTES + block.length) throw new Error(`the version holds ${version.totalSize} bytes, expected ${UPLOAD_BYTES + block.length}`);
  const upload = {
    bytes: UPLOAD_BYTES,
    seconds,
    uploadSeconds: (uploaded - started) / 1000,
    mbPerSecond: UPLOAD_BYTES / 1e6 / seconds,
    rssBeforeMB: rssBefore / 1e6,
    rssMaxMB: rssMax / 1e6,
    rssGrowthMB: (rssMax - rssBefore) / 1e6,
    goalRssGrowthMB: RSS_GOAL_MB,
  };
  results.upload = upload;
  await api('DELETE', `/datasets/${big.id}`);

  // ---- 2. one changed file in a 10,000-file dataset ----
  const folder = path.join(importRoot, 'many');
  for (let i = 0; i < FILES; i++) {
    const dir = path.join(folder, `shard-${String(Math.floor(i / 1000)).padStart(2, '0')}`);
    if (i % 1000 === 0) mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `item-${String(i).padStart(5, '0')}.jsonl`), `${JSON.stringify({ instruction: `Question ${i}`, input: '', output: `Answer ${i} `.repeat(20) })}\n`);
  }
  const configured = await fetch(`${base}/api/v1/plugins/datasets/config`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ importRoots: [importRoot] }) });
  if (configured.status !== 200) throw new Error(`config answered ${configured.status}: ${await configured.text()}`);
  const many = await api('POST', '/datasets', { name: 'bench-many' });
  const importStarted = performance.now();
  const { operationId } = await api('POST', `/datasets/${many.id}/import`, { path: folder });
  for (;;) {
    const op = (await (await fetch(`${base}/api/v1/operations/${operationId}`, { headers: auth })).json()) as { state: string; error?: unknown };
    if (op.state === 'succeeded') break;
    if (op.state !== 'running' && op.state !== 'queued') throw new Error(`the import ${op.state}: ${JSON.stringify(op.error)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const importSeconds = (performance.now() - importStarted) / 1000;

  const storageDir = path.join(dataDir, 'storage');
  const storageBefore = folderBytes(storageDir);
  const contentBefore = folderBytes(storageDir, { content: true });
  const dataBefore = folderBytes(dataDir);
  const which = Math.floor(FILES * 0.4242);
  const changedPath = `shard-${String(Math.floor(which / 1000)).padStart(2, '0')}/item-${String(which).padStart(5, '0')}.jsonl`;
  const changed = Buffer.from(`${JSON.stringify({ instruction: `Question ${which}, corrected`, input: '', output: 'A better answer' })}\n`);
  const t0 = performance.now();
  const c = await api('POST', `/datasets/${many.id}/commits`, {});
  await tusUpload(c.id, changedPath, changed.length, createHash('sha256').update(changed).digest('hex'), async function* () {
    yield changed;
  });
  const v2 = await api('POST', `/commits/${c.id}/finish`, { message: `fix ${changedPath}` });
  const newVersionSeconds = (performance.now() - t0) / 1000;
  const storageAfter = folderBytes(storageDir);
  const contentAfter = folderBytes(storageDir, { content: true });
  const dataAfter = folderBytes(dataDir);
  if (v2.fileCount !== FILES || v2.changes.changed !== 1 || v2.changes.added !== 0) throw new Error(`unexpected version: ${JSON.stringify(v2)}`);
  results.oneChange = {
    files: FILES,
    importSeconds,
    newVersionSeconds,
    changedFileBytes: changed.length,
    storageBytesWritten: storageAfter - storageBefore,
    storageContentBytesWritten: contentAfter - contentBefore,
    dataFolderBytesWritten: dataAfter - dataBefore,
    bytesAddedReported: v2.bytesAdded,
  };

  const u = results.upload as typeof upload;
  const o = results.oneChange as Record<string, number>;
  process.stdout.write(
    `${table([
      ['measure', 'value', 'goal'],
      [`upload ${fmt(UPLOAD_BYTES / 1024 ** 3, 1)} GiB (tus, create → version)`, `${fmt(u.mbPerSecond, 0)} MB/s in ${fmt(u.seconds, 1)} s`, ''],
      ['  of which finishing (store by SHA-256, version)', `${fmt(u.seconds - u.uploadSeconds, 2)} s`, ''],
      ['core RSS growth during the upload', `${fmt(u.rssGrowthMB, 1)} MB (${fmt(u.rssBeforeMB, 0)} → ${fmt(u.rssMaxMB, 0)} MB)`, `≤ ${RSS_GOAL_MB} MB`],
      [`import of ${FILES} files from a server folder`, `${fmt(o.importSeconds!, 1)} s`, ''],
      ['new version, one file changed (commit, upload, finish)', `${fmt(o.newVersionSeconds! * 1000, 0)} ms`, ''],
      ['  content bytes written to storage', `${o.storageContentBytesWritten} B (the changed file: ${o.changedFileBytes} B)`, 'only the changed file'],
      ['  storage bytes with the metadata sidecar', `${o.storageBytesWritten} B`, ''],
      ['  bytes written to the data folder (database included)', `${fmt(o.dataFolderBytesWritten! / 1024, 0)} KiB`, ''],
    ])}\n`,
  );
  const file = writeResult('datasets', results);
  process.stdout.write(`results: ${path.relative(REPO_ROOT, file)}\n`);
  if (u.rssGrowthMB > RSS_GOAL_MB) process.exitCode = 1;
  if (o.storageContentBytesWritten !== o.changedFileBytes) process.exitCode = 1;
} finally {
  await stopGracefully(proc);
}
