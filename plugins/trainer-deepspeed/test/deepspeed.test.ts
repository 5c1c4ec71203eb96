// DeepSpeed runs through the platform, for real: a core (embedded database; this plugin adds no SQL
// of its own, so the PostgreSQL pass, which reruns *.db.test.ts, leaves it out) with the datasets,
// models, lineage, training and trainer-deepspeed plugins; the worker under torchrun with two CPU
// processes (DeepSpeed's CPU accelerator, gloo) as a scheduler job. ZeRO-2 trains to the end and
// registers the model; ZeRO-3 is cancelled (checkpoint with each rank's partition) and resumed with
// the step counter going on; the options are checked against the strategy's schema and its
// refusals. DeepSpeed comes from setup.sh.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { TINY, countingCorpus, lossPoints, waitRun as waitRunWith, logText as logTextWith } from '../../training/test/harness.js';
import { deepspeedConfig } from '../src/config.js';

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '../../..');
const API = '/api/plugins/training';

let core: TestCore;
let datasetVersion: string;
let outputModel: string;

const corpus = countingCorpus;

const waitRun = (id: string, states: string[], timeoutMs = 240_000) => waitRunWith(core.client, id, states, timeoutMs);

const lossSteps = (workloadId: string) => lossPoints(core.client, workloadId);

const logText = (workloadId: string) => logTextWith(core.client, workloadId);

const dsRun = (name: string, options: Record<string, unknown>, hyper: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  name,
  template: { type: 'llama', config: TINY },
  datasetVersion,
  datasetFormat: 'instruction',
  hyper: { learningRate: 0.003, maxSteps: 24, batchSize: 4, sequenceLength: 64, evalSplit: 0.1, evalInterval: 12, checkpointInterval: 12, seed: 7, ...hyper },
  strategy: { id: 'deepspeed', options },
  resources: { gpusPerNode: 0, processesPerNode: 2 },
  output: { model: outputModel },
  ...extra,
});

describe('DeepSpeed strategy', () => {
  beforeAll(async () => {
    await run('sh', [path.join(repo, 'plugins', 'trainer-deepspeed', 'setup.sh')], { timeout: 600_000 });
    core = await startTestCore({ plugins: ['datasets', 'models', 'lineage', 'training', 'trainer-deepspeed'].map((p) => path.join(repo, 'plugins', p)) });
    const dataset = (await core.client.post('/api/plugins/datasets/datasets', { name: 'counting', taskType: 'instruction' })).body;
    const commit = (await core.client.post(`/api/plugins/datasets/datasets/${dataset.id}/commits`, {})).body.id as string;
    const content = corpus(400);
    const sha = createHash('sha256').update(content).digest('hex');
    const put = await core.client.request('PUT', `/api/plugins/datasets/commits/${commit}/files/content?path=train.jsonl&sha256=${sha}`, {
      raw: Buffer.from(content),
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(put.status, put.text).toBe(200);
    datasetVersion = (await core.client.post(`/api/plugins/datasets/commits/${commit}/finish`, {})).body.id;
    outputModel = (await core.client.post('/api/plugins/models/models', { name: 'tiny-zero' })).body.id;
  }, 660_000);
  afterAll(async () => {
    await core?.stop();
  });

  it('is offered by the training plugin, with its options schema', async () => {
    const res = await core.client.get(`${API}/strategies`);
    const ds = (res.body.items as { id: string; cpu: boolean; optionsSchema: any }[]).find((s) => s.id === 'deepspeed');
    expect(ds).toMatchObject({ cpu: true, optionsSchema: { properties: { stage: { enum: [1, 2, 3] } } } });
  });

  it('trains with ZeRO-2 on two processes and registers the model', async () => {
    const res = await core.client.post(`${API}/runs`, dsRun('zero2', { stage: 2 }));
    expect(res.status, res.text).toBe(201);
    // The options as stored: the schema's defaults filled in.
    expect(res.body.spec.strategy).toEqual({ id: 'deepspeed', options: { stage: 2, offloadOptimizer: false, offloadParameters: false, overlapComm: true } });
    const done = await waitRun(res.body.id, ['succeeded', 'failed', 'cancelled']);
    expect(done.state, done.reason).toBe('succeeded');

    // The file the worker read is the plugin's config for these options and hyper-parameters.
    const runDir = path.join(core.dataDir, 'plugins', 'training', 'runs', done.id);
    const written = JSON.parse(await readFile(path.join(runDir, 'ds_config.json'), 'utf8'));
    expect(written).toEqual(deepspeedConfig({ stage: 2, offloadOptimizer: false, offloadParameters: false, overlapComm: true }, { ...res.body.spec.hyper, method: 'full' }));
    const logs = await logText(done.workloadId);
    expect(logs).toContain('"strategy": "deepspeed", "worldSize": 2');

    const loss = await lossSteps(done.workloadId);
    expect(loss.map((p) => p.step)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    const mean = (xs: { value: number }[]) => xs.reduce((a, p) => a + p.value, 0) / xs.length;
    expect(mean(loss.slice(-4))).toBeLessThan(0.75 * mean(loss.slice(0, 4)));
    // The checkpoint holds each rank's ZeRO partition beside the safetensors weights.
    expect(done.checkpoints.map((c: { step: number }) => c.step)).toEqual([12]);
    const dsFiles = await readdir(path.join(done.checkpoints[0].path, 'deepspeed'));
    expect(dsFiles.filter((f) => f.endsWith('optim_states.pt')).sort()).toHaveLength(2);
    const version = await core.client.get(`/api/plugins/models/versions/${done.resultModelVersion}`);
    expect(version.body).toMatchObject({ source: { kind: 'training', ref: done.id }, metadata: { architecture: 'LlamaForCausalLM', dtype: 'F32' } });
  }, 300_000);

  it('cancels a ZeRO-3 run and resumes it from the partitioned checkpoint, the step counter going on', async () => {
    const res = await core.client.post(`${API}/runs`, dsRun('zero3-stop-and-go', { stage: 3 }, { maxSteps: 400, checkpointInterval: 0, evalInterval: 0 }));
    expect(res.status, res.text).toBe(201);
    const id = res.body.id as string;
    await expect.poll(async () => (await lossSteps(res.body.workloadId)).length, { timeout: 120_000, interval: 250 }).toBeGreaterThanOrEqual(3);
    expect((await core.client.post(`${API}/runs/${id}/cancel`)).status).toBe(200);
    const stopped = await waitRun(id, ['cancelled', 'failed', 'succeeded']);
    expect(stopped.state, stopped.reason).toBe('cancelled');
    const step = stopped.checkpoints.at(-1).step as number;
    const resumed = await core.client.post(`${API}/runs/${id}/resume`, {});
    expect(resumed.status, resumed.text).toBe(200);
    await expect.poll(async () => (await lossSteps(resumed.body.workloadId))[0]?.step, { timeout: 120_000, interval: 250 }).toBe(step + 1);
    expect(await logText(resumed.body.workloadId)).toContain(`"startStep": ${step}`);
    await core.client.post(`${API}/runs/${id}/cancel`);
    expect((await waitRun(id, ['cancelled', 'failed', 'succeeded'])).state).toBe('cancelled');
  }, 300_000);

  it('refuses options outside its schema and combinations that cannot run, leaving no run behind', async () => {
    const before = (await core.client.get(`${API}/runs`)).body.items.length;
    const stage4 = await core.client.post(`${API}/runs`, dsRun('stage4', { stage: 4 }));
    expect(stage4.status).toBe(400);
    expect(stage4.body.error.message).toBe('strategy.options.stage must be one of 1, 2, 3');
    const typo = await core.client.post(`${API}/runs`, dsRun('typo', { stag: 2 }));
    expect(typo.status).toBe(400);
    expect(typo.body.error.message).toMatch(/has no option "stag"/);
    const offloadOnCpu = await core.client.post(`${API}/runs`, dsRun('offload-cpu', { stage: 2, offloadOptimizer: true }));
    expect(offloadOnCpu.status).toBe(422);
    expect(offloadOnCpu.body.error.message).toMatch(/Offloading to CPU memory only helps GPU runs/);
    const lora3 = await core.client.post(`${API}/runs`, dsRun('lora3', { stage: 3 }, {}, { method: 'lora' }));
    expect(lora3.status).toBe(422);
    expect(lora3.body.error.message).toMatch(/ZeRO-3 .* LoRA/);
    // A strategy without options takes none.
    const ddpOptions = await core.client.post(`${API}/runs`, { ...dsRun('ddp-opts', {}), strategy: { id: 'ddp', options: { stage: 2 } } });
    expect(ddpOptions.status).toBe(400);
    expect(ddpOptions.body.error.message).toBe('The ddp strategy takes no options');
    expect((await core.client.get(`${API}/runs`)).body.items.length).toBe(before);
  }, 60_000);
});
