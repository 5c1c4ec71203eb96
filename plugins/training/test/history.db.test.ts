// The training plugin's history, compare, retry and templates on a real core (embedded database, or
// PostgreSQL with AIPLAT_TEST_DATABASE=postgres) with the datasets, models and lineage plugins and
// the real Python worker (its venv from plugins/training/runtime/worker/setup.sh): runs listed with filters
// and paging (with the total), two runs compared field by field, a cancelled run retried from step 0
// to success, templates saved, listed, refused with their reason and deleted, and the 409s.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
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

const lossSteps = async (workloadId: string) => (await lossPoints(core.client, workloadId)).map((p) => p.step);

const hyperOf = (extra: Record<string, unknown> = {}) => ({ learningRate: 0.003, maxSteps: 10, batchSize: 8, sequenceLength: 64, evalSplit: 0.1, evalInterval: 5, checkpointInterval: 5, seed: 7, ...extra });
const baseRun = (name: string, hyper: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  name,
  template: { type: 'llama', config: TINY },
  datasetVersion,
  datasetFormat: 'instruction',
  hyper: hyperOf(hyper),
  strategy: { id: 'single' },
  resources: { gpusPerNode: 0 },
  output: { model: outputModel },
  ...extra,
});

async function start(body: Record<string, unknown>): Promise<any> {
  const res = await core.client.post(`${API}/runs`, body);
  expect(res.status, res.text).toBe(201);
  return res.body;
}

async function cancelled(id: string): Promise<any> {
  const res = await core.client.post(`${API}/runs/${id}/cancel`);
  expect(res.status, res.text).toBe(200);
  return waitRun(id, ['cancelled', 'failed', 'succeeded']);
}

const names = (res: { body: { items: { name: string }[] } }) => res.body.items.map((r) => r.name).sort();

describe('training history, compare, retry and templates', () => {
  let alpha: any;
  let beta: any;
  let gamma: any;

  beforeAll(async () => {
    await run('sh', [path.join(repo, 'plugins', 'training', 'runtime', 'worker', 'setup.sh')], { timeout: 600_000 });
    core = await startTestCore({ plugins: ['datasets', 'models', 'lineage', 'training'].map((p) => path.join(repo, 'plugins', p)) });
    const dataset = (await core.client.post('/api/plugins/datasets/datasets', { name: 'counting', taskType: 'instruction' })).body;
    datasetVersion = await uploadVersion(dataset.id, { 'train.jsonl': corpus(400) });
    outputModel = (await core.client.post('/api/plugins/models/models', { name: 'tiny-counter' })).body.id;

    // Three runs: one trained to the end, two cancelled at once (a LoRA one and a DDP one).
    alpha = await start(baseRun('hist-alpha'));
    alpha = await waitRun(alpha.id, ['succeeded', 'failed', 'cancelled']);
    expect(alpha.state, alpha.reason).toBe('succeeded');
    beta = await start(baseRun('hist-beta', { maxSteps: 400, lora: { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'] } }, { method: 'lora' }));
    beta = await cancelled(beta.id);
    gamma = await start(baseRun('HIST-Gamma', { maxSteps: 400, learningRate: 0.001 }, { strategy: { id: 'ddp' }, resources: { gpusPerNode: 0, processesPerNode: 1 } }));
    gamma = await cancelled(gamma.id);
  }, 900_000);
  afterAll(async () => {
    await core?.stop();
  });

  it('filters the list (name, state, method, strategy, inputs, creator, dates) and pages it with the total', async () => {
    const all = await core.client.get(`${API}/runs`);
    expect(all.status, all.text).toBe(200);
    expect(all.body.total).toBe(3);
    // Newest first.
    expect(all.body.items.map((r: { name: string }) => r.name)).toEqual(['HIST-Gamma', 'hist-beta', 'hist-alpha']);

    const get = (query: string) => core.client.get(`${API}/runs?${query}`);
    expect(names(await get('q=hist'))).toEqual(['HIST-Gamma', 'hist-alpha', 'hist-beta']);
    expect(names(await get('q=GAMMA'))).toEqual(['HIST-Gamma']);
    expect(names(await get('q=%25'))).toEqual([]);
    expect(names(await get('state=cancelled'))).toEqual(['HIST-Gamma', 'hist-beta']);
    expect(names(await get('state=succeeded'))).toEqual(['hist-alpha']);
    expect(names(await get('method=lora'))).toEqual(['hist-beta']);
    expect(names(await get('strategy=ddp'))).toEqual(['HIST-Gamma']);
    expect(names(await get('strategy=single&state=cancelled'))).toEqual(['hist-beta']);
    expect((await get(`datasetVersion=${datasetVersion}`)).body.total).toBe(3);
    expect((await get('datasetVersion=nope')).body.total).toBe(0);
    expect((await get('baseModelVersion=nope')).body.total).toBe(0);
    expect((await get(`createdBy=${alpha.createdBy}`)).body.total).toBe(3);
    expect((await get('createdBy=someone-else')).body.total).toBe(0);

    // Days from the runs' own creation times, so a run across midnight cannot move the bounds.
    const created = (await get('')).body.items.map((r: { createdAt: string }) => Date.parse(r.createdAt)) as number[];
    const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
    const earliest = Math.min(...created);
    const latest = Math.max(...created);
    expect((await get(`since=${day(earliest)}&until=${day(latest)}`)).body.total).toBe(3);
    expect((await get(`until=${day(earliest - 86_400_000)}`)).body.total).toBe(0);
    expect((await get(`since=${day(latest + 86_400_000)}`)).body.total).toBe(0);
    // Since the second run was created: it and the third.
    expect(names(await get(`since=${encodeURIComponent(beta.createdAt)}`))).toEqual(['HIST-Gamma', 'hist-beta']);
    const bad = await get('since=last-tuesday');
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/since must be an ISO date/);
    expect((await get('method=sgd')).status).toBe(400);

    const first = await get('limit=2&offset=0');
    expect(first.body).toMatchObject({ total: 3 });
    expect(first.body.items.map((r: { name: string }) => r.name)).toEqual(['HIST-Gamma', 'hist-beta']);
    const second = await get('limit=2&offset=2');
    expect(second.body.total).toBe(3);
    expect(second.body.items.map((r: { name: string }) => r.name)).toEqual(['hist-alpha']);
    const filteredPage = await get('q=hist&state=cancelled&limit=1&offset=1');
    expect(filteredPage.body).toMatchObject({ total: 2, items: [{ name: 'hist-beta' }] });
  });

  it('compares runs: their request fields as rows, a value per run, differences flagged', async () => {
    const res = await core.client.get(`${API}/runs/compare?ids=${alpha.id},${beta.id}`);
    expect(res.status, res.text).toBe(200);
    expect(res.body.runs.map((r: { name: string }) => r.name)).toEqual(['hist-alpha', 'hist-beta']);
    const row = (key: string) => (res.body.rows as { key: string; values: unknown[]; differs: boolean }[]).find((r) => r.key === key);
    expect(row('name')).toBeUndefined();
    expect(row('method')).toEqual({ key: 'method', values: ['full', 'lora'], differs: true });
    expect(row('hyper.maxSteps')).toEqual({ key: 'hyper.maxSteps', values: [10, 400], differs: true });
    expect(row('hyper.learningRate')).toEqual({ key: 'hyper.learningRate', values: [0.003, 0.003], differs: false });
    expect(row('hyper.lora.r')).toEqual({ key: 'hyper.lora.r', values: [null, 4], differs: true });
    expect(row('hyper.lora.targetModules')?.values).toEqual([null, 'q_proj, v_proj']);
    expect(row('template.config.hidden_size')).toMatchObject({ values: [32, 32], differs: false });
    expect(row('datasetVersion')).toMatchObject({ values: [datasetVersion, datasetVersion], differs: false });

    const three = await core.client.get(`${API}/runs/compare?ids=${alpha.id},${beta.id},${gamma.id}`);
    expect(three.status).toBe(200);
    expect(three.body.rows.find((r: { key: string }) => r.key === 'strategy.id')).toMatchObject({ values: ['single', 'single', 'ddp'], differs: true });

    const one = await core.client.get(`${API}/runs/compare?ids=${alpha.id},${alpha.id}`);
    expect(one.status).toBe(400);
    expect(one.body.error.message).toMatch(/two to six different runs/);
    const seven = await core.client.get(`${API}/runs/compare?ids=${[1, 2, 3, 4, 5, 6, 7].map((i) => `r${i}`).join(',')}`);
    expect(seven.status).toBe(400);
    const missing = await core.client.get(`${API}/runs/compare?ids=${alpha.id},nope`);
    expect(missing.status).toBe(404);
    expect(missing.body.error.message).toMatch(/No training run nope/);
  });

  it('retries a cancelled run from step 0 with the same request, to success', async () => {
    const started = await start(baseRun('hist-retry', { maxSteps: 40, checkpointInterval: 20, evalInterval: 20 }));
    await waitRun(started.id, ['running']);
    await expect.poll(async () => (await lossSteps(started.workloadId)).length, { timeout: 60_000, interval: 200 }).toBeGreaterThanOrEqual(2);
    const stopped = await cancelled(started.id);
    expect(stopped.state, stopped.reason).toBe('cancelled');
    expect(stopped.checkpoints.length).toBeGreaterThanOrEqual(1);
    const stoppedAt = stopped.checkpoints.at(-1).step as number;

    const retried = await core.client.post(`${API}/runs/${started.id}/retry`);
    expect(retried.status, retried.text).toBe(200);
    expect(retried.body).toMatchObject({ state: 'pending', attempts: 2, reason: null, finishedAt: null, spec: started.spec });
    expect(retried.body.workloadId).not.toBe(started.workloadId);
    // The old attempt's checkpoints are gone at once.
    expect((await core.client.get(`${API}/runs/${started.id}`)).body.checkpoints).toEqual([]);

    const done = await waitRun(started.id, ['succeeded', 'failed', 'cancelled'], 240_000);
    expect(done.state, done.reason).toBe('succeeded');
    expect(done.attempts).toBe(2);
    expect(done.resultModelVersion).toBeTruthy();
    // From step 1 to the end, not from the checkpoint where the first attempt stopped.
    const steps = await lossSteps(done.workloadId);
    expect(steps[0]).toBe(1);
    expect(steps).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(done.checkpoints.map((c: { step: number }) => c.step)).toEqual([20]);
    if (stoppedAt !== 20) expect(done.checkpoints.some((c: { step: number }) => c.step === stoppedAt)).toBe(false);

    const audit = await core.client.get('/api/v1/audit?action=training:run.retry');
    expect(audit.status, audit.text).toBe(200);
    expect(audit.body.items.map((r: { resourceId: string | null }) => r.resourceId)).toContain(started.id);
  }, 360_000);

  it('refuses to retry a run that is not failed or cancelled (409), or one it cannot see (404)', async () => {
    const succeeded = await core.client.post(`${API}/runs/${alpha.id}/retry`);
    expect(succeeded.status).toBe(409);
    expect(succeeded.body.error.message).toMatch(/Only a failed or cancelled run can be retried; this one is succeeded/);

    const live = await start(baseRun('hist-live', { maxSteps: 400 }));
    const running = await core.client.post(`${API}/runs/${live.id}/retry`);
    expect(running.status).toBe(409);
    expect(running.body.error.message).toMatch(/this one is (pending|running): cancel it first/);
    // Trained a little, so the SIGTERM leaves a checkpoint.
    await expect.poll(async () => (await lossSteps(live.workloadId)).length, { timeout: 60_000, interval: 200 }).toBeGreaterThanOrEqual(2);
    const stopped = await cancelled(live.id);
    expect(stopped.checkpoints.length).toBeGreaterThanOrEqual(1);

    // A retry the scheduler refuses (here: the run now asks for more GPUs than any node has, as if
    // the cluster had shrunk) loses nothing: the checkpoints and their folders stay, the run stays
    // cancelled and can still resume.
    const knex = core.core.database.knex;
    const spec = (await knex('p_training_runs').where({ id: live.id }).first('spec')).spec;
    const parsed = typeof spec === 'string' ? JSON.parse(spec) : spec;
    await knex('p_training_runs').where({ id: live.id }).update({ spec: JSON.stringify({ ...parsed, strategy: { id: 'ddp' }, resources: { gpusPerNode: 64 } }) });
    const refused = await core.client.post(`${API}/runs/${live.id}/retry`);
    expect(refused.status, refused.text).toBe(422);
    expect(refused.body.error.code).toBe('unschedulable');
    const after = (await core.client.get(`${API}/runs/${live.id}`)).body;
    expect(after).toMatchObject({ state: 'cancelled', attempts: stopped.attempts, workloadId: stopped.workloadId });
    expect(after.checkpoints).toEqual(stopped.checkpoints);
    for (const c of after.checkpoints as { path: string }[]) expect(existsSync(path.join(c.path, 'trainer_state.json')), c.path).toBe(true);

    expect((await core.client.post(`${API}/runs/nope/retry`)).status).toBe(404);
  }, 120_000);

  it('saves, lists and deletes templates, refusing bad ones with their reason', async () => {
    const body = { template: { type: 'llama', config: TINY }, datasetVersion, datasetFormat: 'instruction', method: 'full', hyper: hyperOf({ maxSteps: 5 }), strategy: { id: 'single' }, resources: { gpusPerNode: 0 } };
    const created = await core.client.post(`${API}/templates`, { name: 'tiny recipe', description: 'A tiny Llama', body });
    expect(created.status, created.text).toBe(201);
    expect(created.body).toMatchObject({ name: 'tiny recipe', description: 'A tiny Llama', body: { hyper: { maxSteps: 5 }, strategy: { id: 'single' } } });
    expect(created.body.team).toBeTruthy();

    const list = await core.client.get(`${API}/templates`);
    expect(list.status).toBe(200);
    expect(list.body.items.map((t: { name: string }) => t.name)).toEqual(['tiny recipe']);

    // A run from the template: its body plus a name and an output model.
    const fromTemplate = await start({ ...list.body.items[0].body, name: 'hist-from-template', output: { model: outputModel } });
    expect(fromTemplate.spec.hyper.maxSteps).toBe(5);
    await cancelled(fromTemplate.id);

    const clash = await core.client.post(`${API}/templates`, { name: 'tiny recipe', body });
    expect(clash.status).toBe(409);
    expect(clash.body.error.message).toMatch(/already has a training template named tiny recipe/);

    const withName = await core.client.post(`${API}/templates`, { name: 'named', body: { ...body, name: 'x' } });
    expect(withName.status).toBe(400);
    expect(withName.body.error.message).toMatch(/body/);
    expect(withName.body.error.message).toMatch(/name|additional/i);
    const withOutput = await core.client.post(`${API}/templates`, { name: 'with-output', body: { ...body, output: { model: outputModel } } });
    expect(withOutput.status).toBe(400);
    const badLr = await core.client.post(`${API}/templates`, { name: 'bad-lr', body: { ...body, hyper: hyperOf({ learningRate: -1 }) } });
    expect(badLr.status).toBe(400);
    expect(badLr.body.error.message).toMatch(/learningRate/);
    const noName = await core.client.post(`${API}/templates`, { body });
    expect(noName.status).toBe(400);
    expect(noName.body.error.message).toMatch(/name/);
    const blank = await core.client.post(`${API}/templates`, { name: '   ', body });
    expect(blank.status).toBe(400);
    const both = await core.client.post(`${API}/templates`, { name: 'both', body: { ...body, baseModelVersion: 'x' } });
    expect(both.status).toBe(400);
    expect(both.body.error.message).toMatch(/either body\.baseModelVersion or body\.template/);
    expect((await core.client.get(`${API}/templates`)).body.items).toHaveLength(1);

    const removed = await core.client.delete(`${API}/templates/${created.body.id}`);
    expect(removed.status, removed.text).toBeLessThan(300);
    expect((await core.client.get(`${API}/templates`)).body.items).toEqual([]);
    const again = await core.client.delete(`${API}/templates/${created.body.id}`);
    expect(again.status).toBe(404);
    expect(again.body.error.message).toMatch(/No training template/);
  }, 120_000);
});
