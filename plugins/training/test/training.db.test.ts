// The training plugin end to end on a real core (embedded database, or PostgreSQL with
// AIPLAT_TEST_DATABASE=postgres) with the datasets, models and lineage plugins: a dataset uploaded
// through the API, a tiny Llama trained from scratch by the real Python worker as a scheduler job on
// the local executor (CPU), the result registered as a model version with its lineage; a run
// cancelled (SIGTERM → checkpoint) and resumed; bad requests refused with their reason. The worker's
// venv comes from plugins/training/runtime/worker/setup.sh.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { TINY, countingCorpus, lossPoints, uploadVersion as uploadVersionWith, waitRun as waitRunWith } from './harness.js';

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '../../..');
const API = '/api/plugins/training';

let core: TestCore;
let datasetVersion: string;
let outputModel: string;

const corpus = countingCorpus;

const uploadVersion = (datasetId: string, files: Record<string, string>) => uploadVersionWith(core.client, datasetId, files);

const waitRun = (id: string, states: string[], timeoutMs = 180_000) => waitRunWith(core.client, id, states, timeoutMs);

const lossSteps = (workloadId: string) => lossPoints(core.client, workloadId);

async function workerEvents(workloadId: string): Promise<{ event: string; [k: string]: unknown }[]> {
  const res = await core.client.get(`/api/v1/workloads/${workloadId}/logs?limit=1000`);
  const text = (res.body.items as { text: string }[]).map((i) => i.text).join('');
  return text
    .split('\n')
    .filter((l) => l.includes('"type": "event"') || l.includes('"type":"event"'))
    .map((l) => JSON.parse(l.slice(l.indexOf('{'))) as { event: string });
}

const baseRun = (name: string, hyper: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  name,
  template: { type: 'llama', config: TINY },
  datasetVersion,
  datasetFormat: 'instruction',
  hyper: { learningRate: 0.003, maxSteps: 30, batchSize: 8, sequenceLength: 64, evalSplit: 0.1, evalInterval: 10, checkpointInterval: 10, seed: 7, ...hyper },
  strategy: { id: 'single' },
  resources: { gpusPerNode: 0 },
  output: { model: outputModel },
  ...extra,
});

describe('training runs', () => {
  beforeAll(async () => {
    await run('sh', [path.join(repo, 'plugins', 'training', 'runtime', 'worker', 'setup.sh')], { timeout: 600_000 });
    core = await startTestCore({ plugins: [...['datasets', 'models', 'lineage', 'training'].map((p) => path.join(repo, 'plugins', p)), path.join(repo, 'plugins', 'training', 'test', 'fixtures', 'hook-probe')] });
    const dataset = (await core.client.post('/api/plugins/datasets/datasets', { name: 'counting', taskType: 'instruction' })).body;
    datasetVersion = await uploadVersion(dataset.id, { 'train.jsonl': corpus(400) });
    outputModel = (await core.client.post('/api/plugins/models/models', { name: 'tiny-counter' })).body.id;
  }, 660_000);
  afterAll(async () => {
    await core?.stop();
  });

  it('trains a tiny Llama from scratch as a scheduler job, and registers the result with its lineage', async () => {
    const res = await core.client.post(`${API}/runs`, baseRun('from-scratch'));
    expect(res.status, res.text).toBe(201);
    expect(res.body).toMatchObject({ state: 'pending', strategy: 'single', method: 'full', attempts: 1 });
    const done = await waitRun(res.body.id, ['succeeded', 'failed', 'cancelled']);
    expect(done.state, done.reason).toBe('succeeded');
    // Every checkpointInterval steps; the last step's weights are final/ (registered below).
    expect(done.checkpoints.map((c: { step: number }) => c.step)).toEqual([10, 20]);

    const loss = await lossSteps(done.workloadId);
    expect(loss.map((p) => p.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    const mean = (xs: { value: number }[]) => xs.reduce((a, p) => a + p.value, 0) / xs.length;
    expect(mean(loss.slice(-5))).toBeLessThan(0.7 * mean(loss.slice(0, 5)));

    const finished = (await workerEvents(done.workloadId)).find((e) => e.event === 'finished')!;
    const version = await core.client.get(`/api/plugins/models/versions/${done.resultModelVersion}`);
    expect(version.status).toBe(200);
    expect(version.body).toMatchObject({ source: { kind: 'training', ref: done.id }, metadata: { architecture: 'LlamaForCausalLM', dtype: 'F32' } });
    // What PyTorch counted in the worker is what the registry read from the safetensors header.
    expect(version.body.metadata.parameters).toBe(finished.parameters);

    const graph = await core.client.get(`/api/plugins/lineage/graph?kind=models.version&id=${done.resultModelVersion}&direction=up&depth=3`);
    const kinds = (graph.body.nodes as { kind: string; id: string }[]).map((n) => `${n.kind}:${n.id}`);
    expect(kinds).toEqual(expect.arrayContaining([`training.run:${done.id}`, `datasets.version:${datasetVersion}`]));

    // The hooks heard the run: started, rank 0's metric points (every step's loss), both checkpoints, finished with the result.
    const seen = ((await core.client.get('/api/plugins/training-hook-probe/seen')).body.items as any[]).filter((e) => e.run === done.id);
    expect(seen[0]).toMatchObject({ hook: 'runStarted', state: 'pending' });
    const logged = seen.filter((e) => e.hook === 'metricLogged');
    expect(logged.flatMap((e) => e.names)).toEqual(expect.arrayContaining(['loss', 'lr']));
    expect(new Set(logged.flatMap((e) => e.steps))).toEqual(new Set(Array.from({ length: 30 }, (_, i) => i + 1)));
    expect(seen.filter((e) => e.hook === 'checkpointSaved').map((e) => e.step)).toEqual([10, 20]);
    expect(seen.at(-1)).toMatchObject({ hook: 'runFinished', state: 'succeeded', resultModelVersion: done.resultModelVersion });
  }, 240_000);

  it('cancels a run (the worker saves a checkpoint on SIGTERM) and resumes it where it stopped', async () => {
    const res = await core.client.post(`${API}/runs`, baseRun('stop-and-go', { maxSteps: 400, checkpointInterval: 0, evalInterval: 0 }));
    expect(res.status, res.text).toBe(201);
    const id = res.body.id as string;
    await waitRun(id, ['running']);
    await expect.poll(async () => (await lossSteps(res.body.workloadId)).length, { timeout: 60_000, interval: 250 }).toBeGreaterThanOrEqual(3);
    const cancel = await core.client.post(`${API}/runs/${id}/cancel`);
    expect(cancel.status, cancel.text).toBe(200);
    const stopped = await waitRun(id, ['cancelled', 'failed', 'succeeded']);
    expect(stopped.state, stopped.reason).toBe('cancelled');
    expect(stopped.checkpoints).toHaveLength(1);
    const step = stopped.checkpoints[0].step as number;
    expect(step).toBeGreaterThanOrEqual(3);

    const resumed = await core.client.post(`${API}/runs/${id}/resume`, {});
    expect(resumed.status, resumed.text).toBe(200);
    expect(resumed.body).toMatchObject({ state: 'pending', attempts: 2 });
    expect(resumed.body.workloadId).not.toBe(stopped.workloadId);
    await expect.poll(async () => (await lossSteps(resumed.body.workloadId))[0]?.step, { timeout: 60_000, interval: 250 }).toBe(step + 1);
    // Cancel again rather than train 400 steps: the resume itself is what this checks.
    await core.client.post(`${API}/runs/${id}/cancel`);
    expect((await waitRun(id, ['cancelled', 'failed', 'succeeded'])).state).toBe('cancelled');
  }, 240_000);

  it('runs on two nodes as one gang: torchrun’s static rendezvous from the scheduler’s MASTER_ADDR and RANK', async () => {
    const res = await core.client.post(`${API}/runs`, { ...baseRun('two-nodes', { maxSteps: 12, evalInterval: 0, checkpointInterval: 0 }), strategy: { id: 'ddp' }, resources: { gpusPerNode: 0, nodes: 2, processesPerNode: 1 } });
    expect(res.status, res.text).toBe(201);
    const workload = await core.client.get(`/api/v1/workloads/${res.body.workloadId}`);
    expect(workload.body).toMatchObject({ kind: 'job', spec: { replicas: 2 } });
    const done = await waitRun(res.body.id, ['succeeded', 'failed', 'cancelled']);
    expect(done.state, done.reason).toBe('succeeded');
    const logs = await core.client.get(`/api/v1/workloads/${done.workloadId}/logs?limit=1000`);
    const items = logs.body.items as { replica: number; text: string }[];
    const textOf = (replica: number) => items.filter((i) => i.replica === replica).map((i) => i.text).join('');
    // Each node's launcher joined the same rendezvous, as node 0 and node 1 of 2.
    expect(textOf(0)).toMatch(/aiplat_train\.launch: .*--nnodes 2 --node_rank 0 --master_addr \S+ --master_port \d+ --rdzv_backend static --nproc_per_node 1/);
    expect(textOf(1)).toMatch(/--nnodes 2 --node_rank 1 /);
    expect(textOf(1)).toMatch(/rank 1\/2 on cpu/);
    // One world of two processes; metrics from global rank 0 only, one point per step.
    expect(textOf(0)).toContain('"worldSize": 2');
    expect((await lossSteps(done.workloadId)).map((p) => p.step)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(done.resultModelVersion).toBeTruthy();
  }, 240_000);

  it('refuses bad requests with their reason, and leaves no run behind', async () => {
    const before = (await core.client.get(`${API}/runs`)).body.items.length;
    const negative = await core.client.post(`${API}/runs`, baseRun('bad-lr', { learningRate: -1 }));
    expect(negative.status).toBe(400);
    expect(negative.body.error.message).toMatch(/learningRate/);

    const qlora = await core.client.post(`${API}/runs`, baseRun('qlora-cpu', {}, { method: 'qlora' }));
    expect(qlora.status).toBe(422);
    expect(qlora.body.error.message).toMatch(/QLoRA .* GPU/);

    const chat = (await core.client.post('/api/plugins/datasets/datasets', { name: 'broken-chat', taskType: 'chat' })).body;
    const chatVersion = await uploadVersion(chat.id, { 'chat.jsonl': `${JSON.stringify({ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] })}\n${JSON.stringify({ turns: [] })}\n` });
    const wrongFormat = await core.client.post(`${API}/runs`, { ...baseRun('bad-data'), datasetVersion: chatVersion, datasetFormat: 'chat' });
    expect(wrongFormat.status).toBe(422);
    expect(wrongFormat.body.error.message).toMatch(/chat\.jsonl has 1 bad line\(s\), e\.g\. line 2/);

    const tooMany = await core.client.post(`${API}/runs`, { ...baseRun('too-many-gpus'), strategy: { id: 'ddp' }, resources: { gpusPerNode: 64 } });
    expect(tooMany.status, tooMany.text).toBe(422);
    expect(tooMany.body.error.code).toBe('unschedulable');

    const singleOnTwo = await core.client.post(`${API}/runs`, { ...baseRun('single-two-nodes'), resources: { gpusPerNode: 0, nodes: 2 } });
    expect(singleOnTwo.status).toBe(422);
    expect(singleOnTwo.body.error.message).toMatch(/single process runs on one node/);

    const both = await core.client.post(`${API}/runs`, { ...baseRun('both'), baseModelVersion: 'x' });
    expect(both.status).toBe(400);
    expect((await core.client.get(`${API}/runs`)).body.items.length).toBe(before);
  }, 120_000);
});
