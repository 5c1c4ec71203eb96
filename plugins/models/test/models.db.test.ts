// The models plugin end to end, on a real core (embedded database, or PostgreSQL with
// AIPLAT_TEST_DATABASE=postgres): the tiny Llama built by test/fixtures/make_models.py (PyTorch +
// transformers, provisioned once by scripts/provision-python-ml.sh, generated once per file run) is
// imported from the server disk, uploaded, staged, compared, measured and downloaded.
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../../..');
const API = '/api/plugins/models';

let work: string;
let roots: string;
let llama: string;
let pyParameters: number;
let core: TestCore;

async function waitOperation(id: string) {
  const op = await core.core.operations.wait(id);
  return op;
}

async function createModel(name: string) {
  const res = await core.client.post(`${API}/models`, { name, description: `${name} for tests` });
  expect(res.status).toBe(201);
  return res.body as { id: string; name: string; team: string };
}

async function importVersion(modelId: string, folder: string) {
  const res = await core.client.post(`${API}/models/${modelId}/versions/import`, { path: folder });
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  const op = await waitOperation(res.body.operationId);
  expect(op.state, JSON.stringify(op.error)).toBe('succeeded');
  return (op.result as { versionId: string }).versionId;
}

async function blobCount(): Promise<number> {
  const store = core.core.storage.forPlugin('models');
  let n = 0;
  let cursor: string | undefined;
  do {
    const page = await store.list('blobs/', { limit: 1000, cursor });
    n += page.items.length;
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return n;
}

async function upload(modelId: string, files: { name: string; content: Uint8Array; path?: string }[], client = core.client) {
  const form = new FormData();
  for (const f of files) {
    if (f.path) form.append('path', f.path);
    form.append('file', new Blob([f.content]), f.name);
  }
  const res = await fetch(new URL(`${API}/models/${modelId}/versions`, core.url), { method: 'POST', headers: { authorization: `Bearer ${client.token}` }, body: form });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

beforeAll(async () => {
  const provision = await run('sh', [path.join(repo, 'scripts/provision-python-ml.sh')], { maxBuffer: 16 << 20 });
  const python = provision.stdout.trim().split('\n').pop()!;
  work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-models-db-'));
  roots = path.join(work, 'roots');
  const out = await run(python, [path.join(here, 'fixtures/make_models.py'), path.join(roots, 'py')], { maxBuffer: 64 << 20 });
  // From its first line that opens the JSON: a library may log to stdout first (DeepSpeed, when
  // installed beside transformers, announces its accelerator there).
  pyParameters = (JSON.parse(out.stdout.slice(out.stdout.search(/^\{/m))) as { llama: { parameters: number } }).llama.parameters;
  llama = path.join(roots, 'py', 'llama');
  // A folder without config.json, one outside the roots, and a symlink leaving the roots.
  await mkdir(path.join(roots, 'no-config'));
  await cp(path.join(llama, 'model.safetensors'), path.join(roots, 'no-config', 'model.safetensors'));
  await cp(llama, path.join(work, 'outside'), { recursive: true });
  await symlink(path.join(work, 'outside'), path.join(roots, 'escape'));
  core = await startTestCore({ plugins: [path.join(repo, 'plugins/models'), path.join(here, 'fixtures/metrics-probe')] });
}, 20 * 60_000);

afterAll(async () => {
  await core?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('models plugin', () => {
  let model: { id: string; name: string; team: string };
  let v1: string;
  let v2: string;
  let v3: string;

  it('starts, and refuses imports until importRoots is set, naming the setting', async () => {
    expect((await core.client.get('/api/v1/plugins/models')).body.state).toBe('enabled');
    model = await createModel('tiny-llama');
    const res = await core.client.post(`${API}/models/${model.id}/versions/import`, { path: llama });
    expect(res.status).toBe(409);
    expect(res.body.error.message).toMatch(/importRoots/);
    const set = await core.client.put('/api/v1/plugins/models/config', { importRoots: [roots] });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
  });

  it('imports a Hugging Face folder from the server disk, with the metadata read from its files', async () => {
    v1 = await importVersion(model.id, llama);
    const res = await core.client.get(`${API}/versions/${v1}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ number: 1, stage: 'draft', source: { kind: 'import', ref: llama }, modelId: model.id });
    expect(res.body.metadata).toMatchObject({ architecture: 'LlamaForCausalLM', modelType: 'llama', parameters: 106_816, dtype: 'F32', format: 'safetensors' });
    expect(res.body.metadata.parameters).toBe(pyParameters);
    const names = (res.body.files as { path: string }[]).map((f) => f.path);
    expect(names).toEqual(expect.arrayContaining(['config.json', 'model.safetensors']));
    expect(names).toEqual((await readdir(llama)).filter((n) => !n.startsWith('.')).sort());
    expect(res.body.totalSize).toBe(res.body.files.reduce((n: number, f: { size: number }) => n + f.size, 0));
    expect(res.body.stageHistory).toEqual([expect.objectContaining({ from: null, to: 'draft' })]);
  });

  it('stores identical files once across versions', async () => {
    const before = await blobCount();
    expect(before).toBe(new Set(((await core.client.get(`${API}/versions/${v1}`)).body.files as { sha256: string }[]).map((f) => f.sha256)).size);
    v2 = await importVersion(model.id, llama);
    expect((await core.client.get(`${API}/versions/${v2}`)).body.number).toBe(2);
    expect(await blobCount()).toBe(before);
    const listed = await core.client.get(`${API}/models/${model.id}/versions`);
    expect(listed.body.items.map((v: { number: number }) => v.number)).toEqual([2, 1]);
  });

  it('registers an uploaded small model', async () => {
    const names = (await readdir(llama)).filter((n) => !n.startsWith('.'));
    const files = await Promise.all(names.map(async (name) => ({ name, content: new Uint8Array(await readFile(path.join(llama, name))) })));
    const before = await blobCount();
    const res = await upload(model.id, files);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body).toMatchObject({ number: 3, stage: 'draft', source: { kind: 'upload' } });
    expect(res.body.metadata).toMatchObject({ architecture: 'LlamaForCausalLM', parameters: 106_816, dtype: 'F32' });
    expect(await blobCount()).toBe(before);
    v3 = res.body.id;
    // The hook saw all three, after their commits.
    const seen = (await core.client.get('/api/plugins/metrics-probe/seen')).body.seen as { hook: string; version: string }[];
    expect(seen.filter((s) => s.hook === 'versionRegistered').map((s) => s.version)).toEqual([v1, v2, v3]);
  });

  it('refuses an upload that is not a model, creating nothing', async () => {
    const before = (await core.client.get(`${API}/models/${model.id}/versions`)).body.items.length;
    const res = await upload(model.id, [{ name: 'notes.txt', content: new TextEncoder().encode('hello') }]);
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('unprocessable');
    expect(res.body.error.message).toMatch(/has no config\.json/);
    expect(res.body.error.message).not.toMatch(/aiplat-models-upload/);
    const bad = await upload(model.id, [{ name: 'evil.json', path: '../evil.json', content: new TextEncoder().encode('{}') }]);
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/not a plain relative path/);
    expect((await core.client.get(`${API}/models/${model.id}/versions`)).body.items.length).toBe(before);
  });

  it('downloads a file byte for byte, and the version as a tar archive', async () => {
    const res = await fetch(new URL(`${API}/versions/${v1}/files/model.safetensors`, core.url), { headers: { authorization: `Bearer ${core.client.token}` } });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(await readFile(path.join(llama, 'model.safetensors')))).toBe(true);
    expect((await core.client.get(`${API}/versions/${v1}/files/nope.bin`)).status).toBe(404);

    const archive = await fetch(new URL(`${API}/versions/${v1}/download`, core.url), { headers: { authorization: `Bearer ${core.client.token}` } });
    expect(archive.status).toBe(200);
    expect(archive.headers.get('content-type')).toBe('application/x-tar');
    const bytes = Buffer.from(await archive.arrayBuffer());
    const entries: { name: string; body: Buffer }[] = [];
    const extract = tar.extract();
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => chunks.push(c as Buffer));
      stream.on('end', () => {
        entries.push({ name: header.name, body: Buffer.concat(chunks) });
        next();
      });
    });
    await new Promise<void>((resolve, reject) => {
      extract.on('finish', resolve);
      extract.on('error', reject);
      Readable.from([bytes]).pipe(extract);
    });
    const names = (await readdir(llama)).filter((n) => !n.startsWith('.')).sort();
    expect(entries.map((e) => e.name)).toEqual(names.map((n) => `tiny-llama-v1/${n}`));
    expect(entries.find((e) => e.name.endsWith('config.json'))!.body.equals(await readFile(path.join(llama, 'config.json')))).toBe(true);
  });

  it('guards stage changes with models:promote, audits them and archives the previous production version', async () => {
    const operator = await core.createUser('olga', ['operator']);
    const denied = await operator.client.post(`${API}/versions/${v1}/stage`, { to: 'staging' });
    expect(denied.status).toBe(403);
    expect((await operator.client.get(`${API}/versions/${v1}`)).status).toBe(200); // operators read

    expect((await core.client.post(`${API}/versions/${v1}/stage`, { to: 'staging' })).body.stage).toBe('staging');
    expect((await core.client.post(`${API}/versions/${v1}/stage`, { to: 'production' })).body.stage).toBe('production');
    // draft → production skips staging: refused.
    const skip = await core.client.post(`${API}/versions/${v2}/stage`, { to: 'production' });
    expect(skip.status).toBe(409);
    expect(skip.body.error.details.allowed).toEqual(['staging', 'archived']);
    expect((await core.client.post(`${API}/versions/${v2}/stage`, { to: 'staging' })).status).toBe(200);
    const promoted = await core.client.post(`${API}/versions/${v2}/stage`, { to: 'production', reason: 'better' });
    expect(promoted.status).toBe(200);
    expect(promoted.body.archived).toEqual([v1]);
    expect((await core.client.get(`${API}/versions/${v1}`)).body.stage).toBe('archived');
    // The list tells each model's version count, newest version and production version.
    const listed = (await core.client.get(`${API}/models`)).body.items as { id: string; versionCount: number; latestVersion: { id: string }; productionVersion: { id: string; stage: string } | null }[];
    const mine = listed.find((m) => m.id === model.id)!;
    const versionIds = ((await core.client.get(`${API}/models/${model.id}`)).body.versions as { id: string }[]).map((v) => v.id);
    expect(mine.versionCount).toBe(versionIds.length);
    expect(mine.latestVersion.id).toBe(versionIds[0]);
    expect(mine.productionVersion).toEqual({ id: v2, number: expect.any(Number), stage: 'production' });
    expect((await core.client.post(`${API}/versions/${v1}/stage`, { to: 'production' })).status).toBe(409); // archived → staging only
    expect((await core.client.post(`${API}/versions/${v1}/stage`, { to: 'bogus' })).status).toBe(400);

    const rows = (await core.core.database.knex('audit_log').where({ action: 'models:version.stage' }).orderBy('id')) as { resource_id?: string; details: unknown }[];
    expect(rows.length).toBe(5); // v1: draft>staging, staging>production; v2: draft>staging, staging>production (+ v1 production>archived)
    const denials = await core.core.database.knex('audit_log').where({ outcome: 'denied' }).where('action', 'like', 'models:%');
    expect(denials.length).toBeGreaterThanOrEqual(1);

    // A role granted models:promote may promote.
    const granted = await core.client.post('/api/v1/roles', { name: 'promoter', permissions: ['models:promote', 'models:read'] });
    expect(granted.status, JSON.stringify(granted.body)).toBe(201);
    const promoter = await core.createUser('pete', [granted.body.id]);
    expect((await promoter.client.post(`${API}/versions/${v3}/stage`, { to: 'staging' })).status).toBe(200);
    await expect
      .poll(async () => ((await core.client.get('/api/plugins/metrics-probe/seen')).body.seen as { hook: string }[]).filter((s) => s.hook === 'stageChanged').length)
      .toBeGreaterThanOrEqual(5);
    const seen = (await core.client.get('/api/plugins/metrics-probe/seen')).body.seen as { hook: string; version: string; from: string; to: string; by: string }[];
    expect(seen.filter((s) => s.hook === 'stageChanged' && s.version === v1).map((s) => `${s.from}>${s.to}:${s.by === 'models' ? 'models' : 'user'}`)).toEqual([
      'draft>staging:user',
      'staging>production:user',
      'production>archived:models',
    ]);
  });

  it('records metrics from another plugin through the service, and compares versions side by side', async () => {
    const recorded = await core.client.post('/api/plugins/metrics-probe/record', { versionId: v1, evaluation: { accuracy: 0.5 }, speed: { tokensPerSecond: 120 } });
    expect(recorded.status, JSON.stringify(recorded.body)).toBe(200);
    expect(recorded.body.metrics.evaluation.accuracy).toMatchObject({ value: 0.5, recordedBy: 'metrics-probe' });
    const own = await core.client.post(`${API}/versions/${v2}/metrics`, { evaluation: { accuracy: 0.75 } });
    expect(own.status).toBe(200);
    expect(own.body.evaluation.accuracy.value).toBe(0.75);
    expect((await core.client.post(`${API}/versions/${v2}/metrics`, { evaluation: { accuracy: 'high' } })).status).toBe(400);

    const cmp = await core.client.get(`${API}/compare?versions=${v1},${v2}`);
    expect(cmp.status).toBe(200);
    expect(cmp.body.versions.map((v: { number: number }) => v.number)).toEqual([1, 2]);
    const row = (field: string) => cmp.body.rows.find((r: { field: string }) => r.field === field);
    expect(row('parameters')).toEqual({ group: 'metadata', field: 'parameters', values: [106_816, 106_816], differs: false });
    expect(row('totalBytes').differs).toBe(false);
    expect(row('accuracy')).toEqual({ group: 'evaluation', field: 'accuracy', values: [0.5, 0.75], differs: true });
    expect(row('tokensPerSecond')).toEqual({ group: 'speed', field: 'tokensPerSecond', values: [120, null], differs: true });
    expect((await core.client.get(`${API}/compare?versions=${v1}`)).status).toBe(400);
    expect((await core.client.get(`${API}/compare?versions=${v1},nope`)).status).toBe(404);
  });

  it('refuses bad imports with clear errors and creates nothing', async () => {
    const versions = async () => (await core.client.get(`${API}/models/${model.id}/versions`)).body.items.length;
    const before = await versions();
    const imp = (body: unknown) => core.client.post(`${API}/models/${model.id}/versions/import`, body);

    const outside = await imp({ path: path.join(work, 'outside') });
    expect(outside.status).toBe(403);
    expect(outside.body.error.message).toMatch(/not inside an import root/);
    const dots = await imp({ path: `${roots}/py/../../outside` });
    expect(dots.status).toBe(400);
    expect(dots.body.error.message).toMatch(/\.\./);
    expect((await imp({ path: path.join(roots, 'escape') })).status).toBe(403); // a symlink out of the roots
    expect((await imp({ path: 'py/llama' })).status).toBe(400);
    expect((await imp({ path: path.join(roots, 'missing') })).status).toBe(404);

    const noConfig = await imp({ path: path.join(roots, 'no-config') });
    expect(noConfig.status).toBe(422);
    expect(noConfig.body.error.code).toBe('unprocessable');
    expect(noConfig.body.error.message).toBe(`${path.join(roots, 'no-config')} has no config.json: a Hugging Face model folder needs one (or give a .gguf file)`);

    expect((await imp({ path: llama, extra: 1 })).status).toBe(400);
    expect((await imp({})).status).toBe(400);
    expect((await core.client.post(`${API}/models/${model.id}/versions/import`, undefined, { raw: '{"path":', headers: { 'content-type': 'application/json' } })).status).toBe(400);
    expect((await core.client.post(`${API}/models/nope/versions/import`, { path: llama })).status).toBe(404);
    expect(await versions()).toBe(before);
  });

  it('keeps models per team, with a card, and checks permissions', async () => {
    expect((await core.client.post(`${API}/models`, { name: 'tiny-llama' })).status).toBe(409);
    expect((await core.client.post(`${API}/models`, { name: '../x' })).status).toBe(400);
    const card = '# Tiny Llama\n\nA test model.\n';
    expect((await core.client.request('PUT', `${API}/models/${model.id}/card`, { raw: card, headers: { 'content-type': 'text/markdown' } })).status).toBe(204);
    expect((await core.client.get(`${API}/models/${model.id}`)).body.card).toBe(card);
    const viewer = await core.createUser('vera', ['viewer']);
    expect((await viewer.client.get(`${API}/models`)).body.items.map((m: { name: string }) => m.name)).toContain('tiny-llama');
    expect((await viewer.client.post(`${API}/models`, { name: 'mine' })).status).toBe(403);
    // Another team's member sees nothing of the default team's models.
    const team = await core.client.post('/api/v1/teams', { name: 'other' });
    expect(team.status, JSON.stringify(team.body)).toBe(201);
    const outsider = await core.createUser('otto', [], { teams: [{ team: team.body.id, roles: ['operator'] }] });
    expect((await outsider.client.get(`${API}/models`)).body.items).toEqual([]);
    expect((await outsider.client.get(`${API}/versions/${v1}`)).status).toBe(404);
    const theirs = await outsider.client.post(`${API}/models`, { name: 'tiny-llama' }); // same name, another team: fine
    expect(theirs.status, JSON.stringify(theirs.body)).toBe(201);
    expect(theirs.body.team).toBe(team.body.id);
    expect((await outsider.client.post(`${API}/versions/${v1}/metrics`, { evaluation: { x: 1 } })).status).toBe(404);
    expect((await core.client.delete(`${API}/models/${model.id}`)).status).toBe(409); // a version is in production
  });

  it('deletes a version, keeping blobs other versions still use', async () => {
    const before = await blobCount();
    expect((await core.client.delete(`${API}/versions/${v3}`)).status).toBe(204);
    expect(await blobCount()).toBe(before);
    const other = await createModel('short-lived');
    const gguf = await upload(other.id, [{ name: 'tiny.gguf', content: new Uint8Array(await readFile(path.join(roots, 'py', 'tiny.gguf'))) }]);
    expect(gguf.status, JSON.stringify(gguf.body)).toBe(201);
    expect(gguf.body.metadata.format).toBe('gguf');
    expect(await blobCount()).toBe(before + 1);
    expect((await core.client.delete(`${API}/models/${other.id}`)).status).toBe(204);
    expect(await blobCount()).toBe(before);
    await writeFile(path.join(work, 'done'), '');
  });
});

describe('models plugin with lineage', () => {
  let withLineage: TestCore;
  beforeAll(async () => {
    withLineage = await startTestCore({ plugins: [path.join(repo, 'plugins/models'), path.join(repo, 'plugins/lineage'), path.join(here, 'fixtures/metrics-probe')] });
  }, 120_000);
  afterAll(() => withLineage?.stop());

  it('records where a version registered through the service comes from', async () => {
    const c = withLineage.client;
    const model = (await c.post(`${API}/models`, { name: 'lineage-llama' })).body as { id: string };
    const trained = await c.post('/api/plugins/metrics-probe/register', { model: model.id, folder: llama, kind: 'training', ref: 'run-42' });
    expect(trained.status, JSON.stringify(trained.body)).toBe(200);
    expect(trained.body).toMatchObject({ number: 1, source: { kind: 'training', ref: 'run-42' } });
    expect(trained.body.metadata.parameters).toBe(106_816);
    const optimised = await c.post('/api/plugins/metrics-probe/register', { model: model.id, folder: path.join(roots, 'py', 'tiny.gguf'), kind: 'optimisation', ref: trained.body.id });
    expect(optimised.status, JSON.stringify(optimised.body)).toBe(200);
    expect(optimised.body.metadata.format).toBe('gguf');

    const version = await c.get(`${API}/versions/${optimised.body.id}`);
    expect(version.body.lineage.graph).toBe(`/api/plugins/lineage/graph?kind=models.version&id=${optimised.body.id}`);
    const graph = await c.get(version.body.lineage.graph + '&direction=up');
    expect(graph.status, JSON.stringify(graph.body)).toBe(200);
    const edges = (graph.body.edges as { from: { kind: string; id: string }; to: { id: string }; relation: string }[]).map((e) => `${e.from.kind}:${e.from.id}-${e.relation}->${e.to.id}`);
    expect(edges.sort()).toEqual([
      `models.version:${trained.body.id}-optimised-from->${optimised.body.id}`,
      `training.run:run-42-trained-from->${trained.body.id}`,
    ].sort());
    const refused = await c.post('/api/plugins/metrics-probe/register', { model: model.id, folder: path.join(roots, 'no-config'), kind: 'upload' });
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toMatch(/has no config\.json/);
    // Files named one by one (e.g. materialised from the caller's storage), under other names.
    const listed = await c.post('/api/plugins/metrics-probe/register', {
      model: model.id,
      kind: 'upload',
      files: [
        { path: 'config.json', file: path.join(llama, 'config.json') },
        { path: 'weights/model.safetensors', file: path.join(llama, 'model.safetensors') },
      ],
    });
    expect(listed.status, JSON.stringify(listed.body)).toBe(200);
    expect(listed.body.files.map((f: { path: string; kind: string }) => `${f.path}:${f.kind}`)).toEqual(['config.json:config', 'weights/model.safetensors:safetensors']);
    expect(listed.body.metadata).toMatchObject({ architecture: 'LlamaForCausalLM', parameters: 106_816 });
    const file = await fetch(new URL(`${API}/versions/${listed.body.id}/files/weights/model.safetensors`, withLineage.url), { headers: { authorization: `Bearer ${c.token}` } });
    expect(file.status).toBe(200);
    expect(Buffer.from(await file.arrayBuffer()).equals(await readFile(path.join(llama, 'model.safetensors')))).toBe(true);
    const unknown = await c.post('/api/plugins/metrics-probe/register', { model: model.id, folder: llama, kind: 'optimisation', ref: 'no-such-version' });
    expect(unknown.status).toBe(400);
    expect((await c.get(`${API}/models/${model.id}/versions`)).body.items).toHaveLength(3);
  });
});
