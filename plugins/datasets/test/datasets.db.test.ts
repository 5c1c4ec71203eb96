// The datasets plugin end to end on a real core (embedded database, or PostgreSQL with
// AIPLAT_TEST_DATABASE=postgres), with the lineage plugin and a probe plugin that taps
// datasets.versionCreated and uses the datasets service. Uploads speak the tus protocol over HTTP
// as a browser's tus client does: create, append, ask the offset after a broken request, append the rest.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../../..');
const API = '/api/plugins/datasets';

const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
const b64 = (s: string) => Buffer.from(s).toString('base64');

let core: TestCore;
let work: string;

async function createDataset(name: string, extra: Record<string, unknown> = {}) {
  const res = await core.client.post(`${API}/datasets`, { name, description: `${name} for tests`, ...extra });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as { id: string; name: string; team: string };
}

async function openCommit(datasetId: string, body: Record<string, unknown> = {}) {
  const res = await core.client.post(`${API}/datasets/${datasetId}/commits`, body);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.id as string;
}

/** tus: creates an upload, answers its URL (relative, as the server gives it). */
async function tusCreate(meta: Record<string, string>, length: number, client = core.client) {
  const res = await fetch(new URL(`${API}/uploads`, core.url), {
    method: 'POST',
    headers: {
      authorization: `Bearer ${client.token}`,
      'tus-resumable': '1.0.0',
      'upload-length': String(length),
      'upload-metadata': Object.entries(meta)
        .map(([k, v]) => `${k} ${b64(v)}`)
        .join(','),
    },
  });
  return { status: res.status, location: res.headers.get('location'), text: await res.text() };
}

async function tusPatch(location: string, offset: number, bytes: Uint8Array) {
  const res = await fetch(new URL(location, core.url), {
    method: 'PATCH',
    headers: { authorization: `Bearer ${core.client.token}`, 'tus-resumable': '1.0.0', 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
    body: bytes,
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

async function tusOffset(location: string) {
  const res = await fetch(new URL(location, core.url), { method: 'HEAD', headers: { authorization: `Bearer ${core.client.token}`, 'tus-resumable': '1.0.0' } });
  return { status: res.status, offset: Number(res.headers.get('upload-offset')) };
}

/** Uploads a whole file through tus in one PATCH. */
async function upload(commit: string, filePath: string, content: Uint8Array | string) {
  const bytes = typeof content === 'string' ? Buffer.from(content) : content;
  const created = await tusCreate({ commit, path: filePath, sha256: sha(bytes) }, bytes.length);
  expect(created.status, created.text).toBe(201);
  const res = await tusPatch(created.location!, 0, bytes);
  expect(res.status, res.text).toBe(204);
  expect(res.headers.get('upload-sha256')).toBe(sha(bytes));
}

async function finish(commit: string, message = '') {
  return core.client.post(`${API}/commits/${commit}/finish`, { message });
}

async function blobCount(): Promise<number> {
  const page = await core.core.storage.forPlugin('datasets').list('blobs/', { limit: 1000 });
  return page.items.length;
}

async function untar(bytes: Buffer): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => chunks.push(c as Buffer));
      stream.on('end', () => {
        out.set(header.name, Buffer.concat(chunks));
        next();
      });
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  Readable.from(bytes).pipe(extract);
  await done;
  return out;
}

const INSTRUCTIONS = [
  JSON.stringify({ instruction: 'Add 2 and 2', input: '', output: '4' }),
  JSON.stringify({ instruction: 'Name a colour', output: 'blue' }),
  '{"instruction": "broken", "output": ',
  JSON.stringify({ instruction: 'Say hi', output: 7 }),
].join('\n');
const CSV = 'id,text,label\n1,hello,true\n2,world,false\n3,again,true\n';

describe('datasets', () => {
  beforeAll(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-datasets-test-'));
    core = await startTestCore({
      plugins: [path.join(repo, 'plugins', 'datasets'), path.join(repo, 'plugins', 'lineage'), path.join(here, 'fixtures', 'datasets-probe')],
    });
  }, 120_000);
  afterAll(async () => {
    await core?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('creates datasets and refuses bad input with clear messages', async () => {
    const d = await createDataset('chat-sft', { tags: ['sft', 'zh'], taskType: 'chat', keepVersions: null });
    expect(d).toMatchObject({ name: 'chat-sft', tags: ['sft', 'zh'], taskType: 'chat', versionCount: 0, latestVersion: null });
    const clash = await core.client.post(`${API}/datasets`, { name: 'chat-sft' });
    expect(clash.status).toBe(409);
    expect(clash.body.error.message).toMatch(/already has a dataset named chat-sft/);
    const badName = await core.client.post(`${API}/datasets`, { name: '../etc' });
    expect(badName.status).toBe(400);
    const badField = await core.client.post(`${API}/datasets`, { name: 'x', colour: 'red' });
    expect(badField.status).toBe(400);
    const badType = await core.client.post(`${API}/datasets`, { name: 'y', taskType: 'astrology' });
    expect(badType.status).toBe(400);
    const list = await core.client.get(`${API}/datasets?tag=zh`);
    expect(list.body.items.map((i: { name: string }) => i.name)).toEqual(['chat-sft']);
    expect((await core.client.get(`${API}/datasets?tag=nope`)).body.items).toEqual([]);
  });

  it('uploads with tus, resumes after a broken request, and makes a version only on finish', async () => {
    const d = await createDataset('instruct');
    const commit = await openCommit(d.id, { message: 'first' });
    // A file in two pieces, the second after asking the server where it stands.
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
    const created = await tusCreate({ commit, path: 'raw/big.bin', sha256: sha(big) }, big.length);
    expect(created.status, created.text).toBe(201);
    expect(created.location).toMatch(/^\/api\/plugins\/datasets\/uploads\/[A-Za-z0-9_-]+$/);
    const half = 1024 * 1024 + 5;
    expect((await tusPatch(created.location!, 0, big.subarray(0, half))).status).toBe(204);
    expect(await tusOffset(created.location!)).toEqual({ status: 200, offset: half });
    // Nothing is visible before finish.
    expect((await core.client.get(`${API}/datasets/${d.id}`)).body.versions).toEqual([]);
    const rest = await tusPatch(created.location!, half, big.subarray(half));
    expect(rest.status, rest.text).toBe(204);
    await upload(commit, 'train.jsonl', INSTRUCTIONS);
    await upload(commit, 'data/table.csv', CSV);
    const staged = await core.client.get(`${API}/commits/${commit}`);
    expect(staged.body.changes.map((c: { path: string }) => c.path)).toEqual(['data/table.csv', 'raw/big.bin', 'train.jsonl']);
    expect((await core.client.get(`${API}/datasets/${d.id}`)).body.versions).toEqual([]);

    const res = await finish(commit);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body).toMatchObject({ number: 1, message: 'first', fileCount: 3, totalSize: big.length + Buffer.byteLength(INSTRUCTIONS) + CSV.length, changes: { added: 3, removed: 0, changed: 0 } });
    expect(res.body.formats).toEqual({ jsonl: 1, csv: 1, other: 1 });
    expect(res.body.bytesAdded).toBe(res.body.totalSize);
    // The commit is gone once finished.
    expect((await core.client.get(`${API}/commits/${commit}`)).status).toBe(404);

    const vid = res.body.id as string;
    const content = await core.client.request('GET', `${API}/versions/${vid}/files/content?path=raw/big.bin`);
    expect(content.status).toBe(200);
    const got = Buffer.from(await (await fetch(new URL(`${API}/versions/${vid}/files/content?path=raw/big.bin`, core.url), { headers: { authorization: `Bearer ${core.client.token}` } })).arrayBuffer());
    expect(sha(got)).toBe(sha(big));

    const files = await core.client.get(`${API}/versions/${vid}/files?prefix=raw/`);
    expect(files.body).toMatchObject({ total: 1, items: [{ path: 'raw/big.bin', size: big.length, sha256: sha(big), kind: 'other' }] });
  });

  it('previews CSV and JSONL, reports malformed lines, and validates the instruction format line by line', async () => {
    const d = (await core.client.get(`${API}/datasets?q=instruct`)).body.items[0];
    const vid = d.latestVersion.id as string;
    const csv = await core.client.get(`${API}/versions/${vid}/preview?path=data/table.csv`);
    expect(csv.status, JSON.stringify(csv.body)).toBe(200);
    expect(csv.body).toMatchObject({ kind: 'csv', rowCount: 3 });
    expect(csv.body.columns.map((c: { name: string }) => c.name)).toEqual(['id', 'text', 'label']);
    expect(csv.body.rows[1].text).toBe('world');
    const jsonl = await core.client.get(`${API}/versions/${vid}/preview?path=train.jsonl`);
    expect(jsonl.body).toMatchObject({ kind: 'jsonl', rowCount: 4 });
    expect(jsonl.body.errors.map((e: { line: number }) => e.line)).toEqual([3]);
    const report = await core.client.get(`${API}/versions/${vid}/validate?path=train.jsonl`);
    expect(report.status, JSON.stringify(report.body)).toBe(200);
    expect(report.body).toMatchObject({ format: 'instruction', detected: true, lines: 4, valid: 2, invalid: 2 });
    expect(report.body.errors.map((e: { line: number }) => e.line)).toEqual([3, 4]);
    expect(report.body.errors[1].message).toMatch(/output/);
    const notJsonl = await core.client.get(`${API}/versions/${vid}/validate?path=data/table.csv`);
    expect(notJsonl.status).toBe(422);
    const missing = await core.client.get(`${API}/versions/${vid}/preview?path=nope.txt`);
    expect(missing.status).toBe(404);
    expect(missing.body.error.message).toMatch(/no file nope.txt/);
  });

  it('refuses a checksum mismatch, a bad path and a truncated upload, leaving no version and no content', async () => {
    const d = await createDataset('guarded');
    const commit = await openCommit(d.id);
    const blobsBefore = await blobCount();
    const bytes = Buffer.from('the real content\n');
    const wrong = await tusCreate({ commit, path: 'a.txt', sha256: sha('something else') }, bytes.length);
    expect(wrong.status).toBe(201);
    const refused = await tusPatch(wrong.location!, 0, bytes);
    expect(refused.status).toBe(422);
    expect(JSON.parse(refused.text).error.message).toMatch(/checksum of a.txt does not match/);
    // The refused upload is gone (a client retry starts afresh), nothing was staged or stored.
    expect((await tusOffset(wrong.location!)).status).toBe(404);
    expect((await core.client.get(`${API}/commits/${commit}`)).body.changes).toEqual([]);
    expect(await blobCount()).toBe(blobsBefore);

    const dotdot = await tusCreate({ commit, path: '../escape.txt' }, 4);
    expect(dotdot.status).toBe(400);
    expect(dotdot.text).toMatch(/not a plain relative path/);
    const noCommit = await tusCreate({ commit: 'no-such-commit', path: 'x.txt' }, 4);
    expect(noCommit.status).toBe(404);

    // Truncated: half the bytes arrive, the client gives up. Finishing finds nothing staged.
    const truncated = await tusCreate({ commit, path: 'half.bin' }, 1000);
    expect((await tusPatch(truncated.location!, 0, Buffer.alloc(400, 1))).status).toBe(204);
    const empty = await finish(commit);
    expect(empty.status).toBe(409);
    expect(empty.body.error.message).toMatch(/at least one file/);
    expect((await core.client.get(`${API}/datasets/${d.id}`)).body.versions).toEqual([]);
    // Abandoning the commit drops the half upload.
    expect((await core.client.delete(`${API}/commits/${commit}`)).status).toBe(204);
    expect((await tusOffset(truncated.location!)).status).toBe(404);

    // The one-request upload checks the checksum as well.
    const c2 = await openCommit(d.id);
    const put = await core.client.request('PUT', `${API}/commits/${c2}/files/content?path=b.txt&sha256=${sha('other')}`, { raw: bytes, headers: { 'content-type': 'application/octet-stream' } });
    expect(put.status).toBe(422);
    expect(put.body.error.message).toMatch(/checksum of b.txt does not match/);
    expect(await blobCount()).toBe(blobsBefore);
    const ok = await core.client.request('PUT', `${API}/commits/${c2}/files/content?path=b.txt&sha256=${sha(bytes)}`, { raw: bytes, headers: { 'content-type': 'application/octet-stream' } });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.body.changes).toEqual([{ path: 'b.txt', op: 'put', size: bytes.length, sha256: sha(bytes) }]);
    expect((await finish(c2)).status).toBe(201);
  });

  it('makes a new version from a base: one changed file is the only new content; diff, lineage and the hook follow', async () => {
    const d = (await core.client.get(`${API}/datasets?q=instruct`)).body.items[0];
    const v1 = d.latestVersion.id as string;
    const blobsBefore = await blobCount();
    const commit = await openCommit(d.id);
    expect((await core.client.get(`${API}/commits/${commit}`)).body.base).toBe(v1);
    const csv2 = `${CSV}4,more,false\n`;
    await upload(commit, 'data/table.csv', csv2);
    // Content the platform holds already is staged by its checksum, without an upload.
    const reuse = await core.client.post(`${API}/commits/${commit}/files`, { path: 'copy/train.jsonl', sha256: sha(INSTRUCTIONS), size: Buffer.byteLength(INSTRUCTIONS) });
    expect(reuse.status, JSON.stringify(reuse.body)).toBe(200);
    const unknown = await core.client.post(`${API}/commits/${commit}/files`, { path: 'x.bin', sha256: sha('never uploaded'), size: 14 });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.message).toMatch(/upload the file/);
    expect((await core.client.delete(`${API}/commits/${commit}/files?path=raw/big.bin`)).status).toBe(200);
    const res = await finish(commit, 'more rows');
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body).toMatchObject({ number: 2, parent: v1, changes: { added: 1, removed: 1, changed: 1 }, fileCount: 3, bytesAdded: csv2.length });
    expect(await blobCount()).toBe(blobsBefore + 1);

    const diff = await core.client.get(`${API}/datasets/${d.id}/diff?to=${res.body.id}`);
    expect(diff.status).toBe(200);
    expect(diff.body.from.id).toBe(v1);
    expect(diff.body.added.map((f: { path: string }) => f.path)).toEqual(['copy/train.jsonl']);
    expect(diff.body.removed.map((f: { path: string }) => f.path)).toEqual(['raw/big.bin']);
    expect(diff.body.changed).toEqual([
      { path: 'data/table.csv', before: expect.objectContaining({ size: CSV.length }), after: expect.objectContaining({ size: csv2.length, sha256: sha(csv2) }) },
    ]);
    expect(diff.body.unchanged).toBe(1);

    const graph = await core.client.get(`/api/plugins/lineage/graph?kind=datasets.version&id=${res.body.id}&direction=up&depth=3`);
    expect(graph.status, JSON.stringify(graph.body)).toBe(200);
    expect(graph.body.edges).toEqual([
      expect.objectContaining({
        from: expect.objectContaining({ kind: 'datasets.version', id: v1, label: 'instruct v1' }),
        to: expect.objectContaining({ kind: 'datasets.version', id: res.body.id, label: 'instruct v2' }),
        relation: 'derived-from',
      }),
    ]);
    const node = graph.body.nodes.find((n: { id: string }) => n.id === v1);
    expect(node?.route).toBe(`/datasets/versions/${v1}`);

    const seen = (await core.client.get('/api/plugins/datasets-probe/seen')).body.seen as { dataset: string; number: number }[];
    expect(seen.filter((s) => s.dataset === 'instruct').map((s) => s.number)).toEqual([1, 2]);

    const folder = path.join(work, 'materialised');
    const mat = await core.client.post('/api/plugins/datasets-probe/materialise', { version: res.body.id, folder });
    expect(mat.status, JSON.stringify(mat.body)).toBe(200);
    expect(await readFile(path.join(folder, 'data', 'table.csv'), 'utf8')).toBe(csv2);
    expect((await readdir(folder)).sort()).toEqual(['copy', 'data', 'train.jsonl']);

    const same = await openCommit(d.id);
    await upload(same, 'data/table.csv', csv2);
    const nothing = await finish(same);
    expect(nothing.status).toBe(409);
    expect(nothing.body.error.message).toMatch(/Nothing changed/);
  });

  it('downloads a version as a tar archive', async () => {
    const d = (await core.client.get(`${API}/datasets?q=instruct`)).body.items[0];
    const res = await fetch(new URL(`${API}/versions/${d.latestVersion.id}/archive`, core.url), { headers: { authorization: `Bearer ${core.client.token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toBe('attachment; filename="instruct-v2.tar"');
    const entries = await untar(Buffer.from(await res.arrayBuffer()));
    expect([...entries.keys()].sort()).toEqual(['instruct-v2/copy/train.jsonl', 'instruct-v2/data/table.csv', 'instruct-v2/train.jsonl']);
    expect(entries.get('instruct-v2/copy/train.jsonl')!.toString()).toBe(INSTRUCTIONS);
  });

  it('tags versions, keeps tagged ones, and prunes old untagged versions by retention with their content', async () => {
    const d = await createDataset('retained');
    const ids: string[] = [];
    for (let i = 1; i <= 4; i++) {
      const c = await openCommit(d.id);
      await upload(c, 'data.txt', `version ${i}\n`);
      const res = await finish(c);
      expect(res.status).toBe(201);
      ids.push(res.body.id);
    }
    expect((await core.client.put(`${API}/versions/${ids[0]}/tags/golden`)).body.tags).toEqual(['golden']);
    // A tag names one version: it moves.
    expect((await core.client.put(`${API}/versions/${ids[1]}/tags/golden`)).body.tags).toEqual(['golden']);
    expect((await core.client.get(`${API}/versions/${ids[0]}`)).body.tags).toEqual([]);
    const tagged = await core.client.delete(`${API}/versions/${ids[1]}`);
    expect(tagged.status).toBe(409);
    expect(tagged.body.error.message).toMatch(/tagged golden/);
    const badTag = await core.client.put(`${API}/versions/${ids[1]}/tags/${encodeURIComponent('no spaces')}`);
    expect(badTag.status).toBe(400);

    const blobsBefore = await blobCount();
    const patched = await core.client.patch(`${API}/datasets/${d.id}`, { keepVersions: 1 });
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    const left = (await core.client.get(`${API}/datasets/${d.id}`)).body.versions.map((v: { number: number }) => v.number);
    expect(left).toEqual([4, 2]); // the newest untagged, and the tagged one
    await expect.poll(blobCount).toBe(blobsBefore - 2);
    expect((await core.client.get(`${API}/versions/${ids[0]}`)).status).toBe(404);
  });

  it('imports a server folder as a version, only under the import roots', async () => {
    const d = await createDataset('imported');
    const root = path.join(work, 'imports');
    const folder = path.join(root, 'set-a');
    await mkdir(path.join(folder, 'images'), { recursive: true });
    await writeFile(path.join(folder, 'train.jsonl'), INSTRUCTIONS);
    await writeFile(path.join(folder, 'images', 'note.txt'), 'hello\n');
    const off = await core.client.post(`${API}/datasets/${d.id}/import`, { path: folder });
    expect(off.status).toBe(409);
    expect(off.body.error.message).toMatch(/importRoots/);
    expect((await core.client.put('/api/v1/plugins/datasets/config', { importRoots: [root] })).status).toBe(200);
    const outside = await core.client.post(`${API}/datasets/${d.id}/import`, { path: work });
    expect(outside.status).toBe(403);
    const dotdot = await core.client.post(`${API}/datasets/${d.id}/import`, { path: `${folder}/../..` });
    expect(dotdot.status).toBe(400);
    const res = await core.client.post(`${API}/datasets/${d.id}/import`, { path: folder, message: 'from disk' });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const op = await core.core.operations.wait(res.body.operationId);
    expect(op.state, JSON.stringify(op.error)).toBe('succeeded');
    const version = await core.client.get(`${API}/versions/${(op.result as { versionId: string }).versionId}`);
    expect(version.body).toMatchObject({ number: 1, message: 'from disk', fileCount: 2, source: { kind: 'import', ref: folder } });
    // The same content as an upload elsewhere: stored once.
    expect(version.body.bytesAdded).toBe(6);
    // Re-import after removing a file: the version says so.
    await rm(path.join(folder, 'images'), { recursive: true });
    const again = await core.client.post(`${API}/datasets/${d.id}/import`, { path: folder });
    const op2 = await core.core.operations.wait(again.body.operationId);
    expect(op2.state, JSON.stringify(op2.error)).toBe('succeeded');
    const v2 = await core.client.get(`${API}/versions/${(op2.result as { versionId: string }).versionId}`);
    expect(v2.body).toMatchObject({ number: 2, fileCount: 1, changes: { added: 0, removed: 1, changed: 0 } });
  });

  it('answers 422 for a Parquet file that is not Parquet', async () => {
    const d = await createDataset('parquet-bad');
    const c = await openCommit(d.id);
    await upload(c, 'table.parquet', 'id,name\n1,not parquet\n');
    const v = (await finish(c)).body;
    const res = await core.client.get(`${API}/versions/${v.id}/preview?path=table.parquet`);
    expect(res.status).toBe(422);
    expect(res.body.error.message).toMatch(/table.parquet is not a Parquet file/);
  });

  it('keeps datasets to their team', async () => {
    const d = (await core.client.get(`${API}/datasets?q=instruct`)).body.items[0];
    const team = await core.client.post('/api/v1/teams', { name: 'other-team' });
    expect(team.status, JSON.stringify(team.body)).toBe(201);
    const outsider = await core.createUser('outsider', [], { teams: [{ team: 'other-team', roles: ['operator'] }] });
    expect((await outsider.client.get(`${API}/datasets/${d.id}`)).status).toBe(404);
    expect((await outsider.client.get(`${API}/versions/${d.latestVersion.id}/files`)).status).toBe(404);
    expect((await outsider.client.get(`${API}/datasets`)).body.items).toEqual([]);
    const c = await openCommit(d.id);
    const res = await fetch(new URL(`${API}/uploads`, core.url), {
      method: 'POST',
      headers: { authorization: `Bearer ${outsider.client.token}`, 'tus-resumable': '1.0.0', 'upload-length': '3', 'upload-metadata': `commit ${b64(c)},path ${b64('x.txt')}` },
    });
    expect(res.status).toBe(404);
  });

  it('sweeps an expired commit at start, with its staged uploads and the content only it held', async () => {
    const d = await createDataset('expiring');
    const commit = await openCommit(d.id);
    const blobsBefore = await blobCount();
    await upload(commit, 'only-here.txt', 'content no version holds\n');
    const half = await tusCreate({ commit, path: 'half.bin' }, 100);
    expect((await tusPatch(half.location!, 0, Buffer.alloc(10))).status).toBe(204);
    expect(await blobCount()).toBe(blobsBefore + 1);
    await core.core.database.knex('p_datasets_commits').where({ id: commit }).update({ expires_at: new Date(Date.now() - 1000).toISOString() });
    expect((await core.client.get(`${API}/commits/${commit}`)).status).toBe(404);
    core = await core.restart();
    expect(await core.core.database.knex('p_datasets_commits').where({ id: commit }).first()).toBeUndefined();
    expect(await blobCount()).toBe(blobsBefore);
    // The half upload is refused once its commit is gone.
    const patched = await tusPatch(half.location!, 10, Buffer.alloc(90));
    expect(patched.status).toBe(404);
  }, 60_000);
});
