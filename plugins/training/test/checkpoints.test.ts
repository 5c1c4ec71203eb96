// Checkpoints, attempts and merged metrics of the training plugin, end to end on a real core
// (embedded database; the attempts table's migration and queries also run on PostgreSQL in
// history.db.test.ts and training.db.test.ts, so this CPU-heavy file runs in the first pass only) with
// the datasets, models and lineage plugins and the real Python worker on the local executor (CPU), as training.db.test.ts:
// a checkpoint registered as a model version (files, source, lineage) and downloaded as a tar; a LoRA
// run over a registered base registers its merged model and its adapter, and a LoRA checkpoint
// registers as an adapter; a cancelled and resumed run answers one loss series over both attempts.
// The worker's venv comes from plugins/training/runtime/worker/setup.sh.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { TINY, countingCorpus, lossPoints, uploadVersion as uploadVersionWith, waitRun as waitRunWith } from './harness.js';

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '../../..');
const API = '/api/plugins/training';
const MODELS = '/api/plugins/models';

let core: TestCore;
let datasetVersion: string;
let outputModel: string;
let scratchRun: any;

const corpus = countingCorpus;

const uploadVersion = (datasetId: string, files: Record<string, string>) => uploadVersionWith(core.client, datasetId, files);

const waitRun = (id: string, states: string[], timeoutMs = 180_000) => waitRunWith(core.client, id, states, timeoutMs);

const lossSteps = async (workloadId: string) => (await lossPoints(core.client, workloadId)).map((p) => p.step);

async function untar(url: string): Promise<{ status: number; type: string | null; disposition: string | null; entries: { name: string; size: number }[] }> {
  const res = await fetch(new URL(url, core.url), { headers: { authorization: `Bearer ${core.client.token}` } });
  if (res.status !== 200) return { status: res.status, type: res.headers.get('content-type'), disposition: null, entries: [] };
  const bytes = Buffer.from(await res.arrayBuffer());
  const entries: { name: string; size: number }[] = [];
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    let size = 0;
    stream.on('data', (c: Buffer) => (size += c.length));
    stream.on('end', () => {
      entries.push({ name: header.name, size });
      next();
    });
  });
  await new Promise<void>((resolve, reject) => {
    extract.on('finish', resolve);
    extract.on('error', reject);
    Readable.from([bytes]).pipe(extract);
  });
  return { status: res.status, type: res.headers.get('content-type'), disposition: res.headers.get('content-disposition'), entries };
}

async function upstream(versionId: string): Promise<{ nodes: string[]; edges: string[] }> {
  const graph = await core.client.get(`/api/plugins/lineage/graph?kind=models.version&id=${versionId}&direction=up&depth=1`);
  expect(graph.status, graph.text).toBe(200);
  return {
    nodes: (graph.body.nodes as { kind: string; id: string }[]).map((n) => `${n.kind}:${n.id}`),
    edges: (graph.body.edges as { from: { kind: string; id: string }; to: { id: string }; relation: string }[]).map((e) => `${e.from.kind}:${e.from.id} -${e.relation}-> ${e.to.id}`),
  };
}

const baseRun = (name: string, hyper: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  name,
  template: { type: 'llama', config: TINY },
  datasetVersion,
  datasetFormat: 'instruction',
  hyper: { learningRate: 0.003, maxSteps: 20, batchSize: 8, sequenceLength: 64, evalSplit: 0.1, evalInterval: 10, checkpointInterval: 10, seed: 7, ...hyper },
  strategy: { id: 'single' },
  resources: { gpusPerNode: 0 },
  output: { model: outputModel },
  ...extra,
});

describe('training checkpoints, attempts and metrics', () => {
  beforeAll(async () => {
    await run('sh', [path.join(repo, 'plugins', 'training', 'runtime', 'worker', 'setup.sh')], { timeout: 600_000 });
    core = await startTestCore({ plugins: ['datasets', 'models', 'lineage', 'training'].map((p) => path.join(repo, 'plugins', p)) });
    const dataset = (await core.client.post('/api/plugins/datasets/datasets', { name: 'counting', taskType: 'instruction' })).body;
    datasetVersion = await uploadVersion(dataset.id, { 'train.jsonl': corpus(400) });
    outputModel = (await core.client.post(`${MODELS}/models`, { name: 'tiny-counter' })).body.id;
  }, 660_000);
  afterAll(async () => {
    await core?.stop();
  });

  it('registers a checkpoint as a model version with its lineage, and downloads it as a tar', async () => {
    const res = await core.client.post(`${API}/runs`, baseRun('ckpt-full'));
    expect(res.status, res.text).toBe(201);
    scratchRun = await waitRun(res.body.id, ['succeeded', 'failed', 'cancelled']);
    expect(scratchRun.state, scratchRun.reason).toBe('succeeded');
    expect(scratchRun.checkpoints.map((c: { step: number }) => c.step)).toEqual([10]);
    expect(scratchRun.resultAdapterVersion).toBeNull();
    expect(scratchRun.attempts).toBe(1);
    expect(scratchRun.attemptList).toMatchObject([{ attempt: 1, workloadId: scratchRun.workloadId, fromStep: null, state: 'succeeded' }]);

    // A model the caller may write: a second one, so the checkpoint's version is easy to tell.
    const target = (await core.client.post(`${MODELS}/models`, { name: 'counter-checkpoints' })).body.id as string;
    const registered = await core.client.post(`${API}/runs/${scratchRun.id}/checkpoints/10/register`, { model: target, description: 'half way' });
    expect(registered.status, registered.text).toBe(201);
    expect(registered.body).toMatchObject({ step: 10, adapter: false, baseModelVersion: null, description: 'half way', version: { modelId: target, number: 1 } });
    const versionId = registered.body.version.id as string;
    const version = await core.client.get(`${MODELS}/versions/${versionId}`);
    expect(version.status).toBe(200);
    expect(version.body).toMatchObject({ source: { kind: 'training', ref: scratchRun.id }, metadata: { architecture: 'LlamaForCausalLM', format: 'safetensors' } });
    expect(version.body.metadata.adapter).toBeUndefined();
    const files = (version.body.files as { path: string }[]).map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining(['model.safetensors', 'config.json']));
    // What only resumes training stays behind.
    for (const f of ['optimizer.pt', 'scheduler.pt', 'trainer_state.json']) expect(files).not.toContain(f);
    const lineage = await upstream(versionId);
    expect(lineage.edges).toContain(`training.run:${scratchRun.id} -checkpoint-of-> ${versionId}`);
    const audit = await core.client.get('/api/v1/audit?action=training:checkpoint.register&outcome=success&limit=10');
    expect(audit.status, audit.text).toBe(200);
    expect(audit.body.items).toHaveLength(1);
    expect(audit.body.items[0]).toMatchObject({ resourceType: 'training-run', resourceId: scratchRun.id, details: { step: 10, model: target, version: versionId } });

    // Refusals, each with its reason.
    const unknownStep = await core.client.post(`${API}/runs/${scratchRun.id}/checkpoints/7/register`, { model: target });
    expect(unknownStep.status).toBe(404);
    expect(unknownStep.body.error.message).toMatch(/no checkpoint at step 7/);
    const noModel = await core.client.post(`${API}/runs/${scratchRun.id}/checkpoints/10/register`, { model: 'nope' });
    expect(noModel.status).toBe(400);
    expect(noModel.body.error.message).toMatch(/No model nope/);
    expect((await core.client.post(`${API}/runs/nope/checkpoints/10/register`, { model: target })).status).toBe(404);

    // The download: the whole checkpoint folder, trainer state and optimizer included.
    const archive = await untar(`${API}/runs/${scratchRun.id}/checkpoints/10/download`);
    expect(archive.status).toBe(200);
    expect(archive.type).toBe('application/x-tar');
    expect(archive.disposition).toContain('ckpt-full-step-10.tar');
    const names = archive.entries.map((e) => e.name);
    expect(names).toEqual(expect.arrayContaining(['ckpt-full-step-10/model.safetensors', 'ckpt-full-step-10/trainer_state.json', 'ckpt-full-step-10/config.json', 'ckpt-full-step-10/optimizer.pt']));
    expect(archive.entries.find((e) => e.name.endsWith('/model.safetensors'))!.size).toBe((version.body.files as { path: string; size: number }[]).find((f) => f.path === 'model.safetensors')!.size);
    expect((await untar(`${API}/runs/${scratchRun.id}/checkpoints/11/download`)).status).toBe(404);
  }, 240_000);

  it('registers the merged model and the adapter of a LoRA run, and a LoRA checkpoint as an adapter', async () => {
    const base = scratchRun.resultModelVersion as string;
    const res = await core.client.post(`${API}/runs`, {
      ...baseRun('ckpt-lora', { maxSteps: 10, checkpointInterval: 5, evalInterval: 0, lora: { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'] } }),
      template: undefined,
      baseModelVersion: base,
      method: 'lora',
    });
    expect(res.status, res.text).toBe(201);
    const done = await waitRun(res.body.id, ['succeeded', 'failed', 'cancelled']);
    expect(done.state, done.reason).toBe('succeeded');
    expect(done.resultModelVersion).toBeTruthy();
    expect(done.resultAdapterVersion).toBeTruthy();

    // The merged model as before: a full model.
    const merged = (await core.client.get(`${MODELS}/versions/${done.resultModelVersion}`)).body;
    expect(merged.metadata.adapter).toBeUndefined();
    expect((merged.files as { path: string }[]).map((f) => f.path)).toContain('model.safetensors');
    // The adapter: a version of the same model, that says it is an adapter.
    const adapter = (await core.client.get(`${MODELS}/versions/${done.resultAdapterVersion}`)).body;
    expect(adapter).toMatchObject({ modelId: outputModel, source: { kind: 'training', ref: done.id }, metadata: { adapter: { peftType: 'LORA', r: 4 } } });
    expect(adapter.metadata.adapter.targetModules.sort()).toEqual(['q_proj', 'v_proj']);
    const adapterFiles = (adapter.files as { path: string }[]).map((f) => f.path);
    expect(adapterFiles).toEqual(expect.arrayContaining(['adapter_model.safetensors', 'adapter_config.json']));
    expect(adapterFiles).not.toContain('model.safetensors');
    // Fewer parameters than the base: the adapter's only.
    expect(adapter.metadata.parameters).toBeLessThan(merged.metadata.parameters);
    const adapterLineage = await upstream(done.resultAdapterVersion);
    expect(adapterLineage.edges).toEqual(expect.arrayContaining([`models.version:${base} -adapter-of-> ${done.resultAdapterVersion}`, `training.run:${done.id} -produced-by-> ${done.resultAdapterVersion}`]));

    // A checkpoint of the LoRA run: an adapter over the run's base version.
    expect(done.checkpoints.map((c: { step: number }) => c.step)).toEqual([5]);
    const registered = await core.client.post(`${API}/runs/${done.id}/checkpoints/5/register`, { model: outputModel });
    expect(registered.status, registered.text).toBe(201);
    expect(registered.body).toMatchObject({ step: 5, adapter: true, baseModelVersion: base });
    const version = (await core.client.get(`${MODELS}/versions/${registered.body.version.id}`)).body;
    expect(version.metadata.adapter).toMatchObject({ peftType: 'LORA' });
    expect((version.files as { path: string }[]).map((f) => f.path)).toEqual(expect.arrayContaining(['adapter_model.safetensors', 'adapter_config.json']));
    const lineage = await upstream(registered.body.version.id);
    expect(lineage.edges).toEqual(expect.arrayContaining([`models.version:${base} -adapter-of-> ${registered.body.version.id}`, `training.run:${done.id} -checkpoint-of-> ${registered.body.version.id}`]));
    const archive = await untar(`${API}/runs/${done.id}/checkpoints/5/download`);
    expect(archive.entries.map((e) => e.name)).toEqual(expect.arrayContaining(['ckpt-lora-step-5/adapter_model.safetensors', 'ckpt-lora-step-5/trainer_state.json']));
  }, 240_000);

  it('refuses to register a LoRA checkpoint over a from-scratch base, saying why', async () => {
    const res = await core.client.post(`${API}/runs`, baseRun('lora-scratch', { maxSteps: 4, checkpointInterval: 2, evalInterval: 0 }, { method: 'lora' }));
    expect(res.status, res.text).toBe(201);
    const done = await waitRun(res.body.id, ['succeeded', 'failed', 'cancelled']);
    expect(done.state, done.reason).toBe('succeeded');
    // Nothing registered could carry the adapter: only the merged model is.
    expect(done.resultModelVersion).toBeTruthy();
    expect(done.resultAdapterVersion).toBeNull();
    const refused = await core.client.post(`${API}/runs/${done.id}/checkpoints/2/register`, { model: outputModel });
    expect(refused.status).toBe(422);
    expect(refused.body.error.message).toMatch(/LoRA adapter only.*from-scratch/);
  }, 240_000);

  it('merges the loss of a cancelled and resumed run into one series, and lists both attempts', async () => {
    const res = await core.client.post(`${API}/runs`, baseRun('two-attempts', { maxSteps: 400, checkpointInterval: 0, evalInterval: 0 }));
    expect(res.status, res.text).toBe(201);
    const id = res.body.id as string;
    const first = res.body.workloadId as string;
    await waitRun(id, ['running']);
    await expect.poll(async () => (await lossSteps(first)).length, { timeout: 60_000, interval: 250 }).toBeGreaterThanOrEqual(3);

    // The resources of a CPU run: one replica on a node, no cards.
    const resources = await core.client.get(`${API}/runs/${id}/resources`);
    expect(resources.status, resources.text).toBe(200);
    expect(resources.body).toMatchObject({ workloadId: first, gpusPerReplica: 0, cpuOnly: true, gpus: [] });
    expect(resources.body.replicas).toHaveLength(1);
    expect(resources.body.replicas[0]).toMatchObject({ replica: 0, restarts: 0, devices: [] });
    expect(resources.body.replicas[0].nodeId).toBeTruthy();

    expect((await core.client.post(`${API}/runs/${id}/cancel`)).status).toBe(200);
    const stopped = await waitRun(id, ['cancelled', 'failed', 'succeeded']);
    expect(stopped.state, stopped.reason).toBe('cancelled');
    const step = stopped.checkpoints.at(-1).step as number;
    const resumed = await core.client.post(`${API}/runs/${id}/resume`, {});
    expect(resumed.status, resumed.text).toBe(200);
    const second = resumed.body.workloadId as string;
    await expect.poll(async () => (await lossSteps(second)).length, { timeout: 60_000, interval: 250 }).toBeGreaterThanOrEqual(3);
    await core.client.post(`${API}/runs/${id}/cancel`);
    const done = await waitRun(id, ['cancelled', 'failed', 'succeeded']);
    expect(done.state).toBe('cancelled');

    expect(done.attempts).toBe(2);
    expect(done.attemptList).toMatchObject([
      { attempt: 1, workloadId: first, fromStep: null, state: 'cancelled' },
      { attempt: 2, workloadId: second, fromStep: step, state: 'cancelled' },
    ]);
    expect(done.attemptList[0].endedAt).toBeTruthy();

    const metrics = await core.client.get(`${API}/runs/${id}/metrics`);
    expect(metrics.status, metrics.text).toBe(200);
    expect(metrics.body.attempts.map((a: { workloadId: string }) => a.workloadId)).toEqual([first, second]);
    expect(metrics.body.topic).toBe(`workloads/${second}/metrics`);
    const loss = (metrics.body.series as { name: string; points: { step: number; value: number; attempt: number }[] }[]).find((s) => s.name === 'loss')!;
    const steps = loss.points.map((p) => p.step);
    // One continuous series: every step from 1 on once, the first attempt's up to the checkpoint, the second's after it.
    expect(steps).toEqual(Array.from({ length: steps.length }, (_, i) => i + 1));
    expect(steps.at(-1)!).toBeGreaterThan(step + 1);
    expect(loss.points.filter((p) => p.attempt === 1).map((p) => p.step)).toEqual(Array.from({ length: step }, (_, i) => i + 1));
    expect(loss.points.filter((p) => p.step > step).every((p) => p.attempt === 2)).toBe(true);
    expect(new Set((await lossSteps(second)).map((s) => s))).toEqual(new Set(steps.filter((s) => s > step)));
    expect((await core.client.get(`${API}/runs/${id}/metrics?name=lr`)).body.series.map((s: { name: string }) => s.name)).toEqual(['lr']);
  }, 300_000);
});
