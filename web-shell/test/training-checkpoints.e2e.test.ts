/**
 * The run page's checkpoints and resources in Chromium against a real core with the datasets,
 * models, lineage and training plugins and the real Python worker (its venv from
 * plugins/training/runtime/worker/setup.sh) on the local executor's CPU: a tiny Llama trained from scratch
 * through the API leaves a checkpoint; on its page the checkpoint is registered as a version of
 * another model through the dialog (checked through the models API, with its lineage), and
 * downloaded as a .tar holding the weights and the trainer state; the Resources tab shows the
 * replica on its node and says the run uses no GPU; a cancelled and resumed run draws one loss curve
 * over both attempts and lists them; and the same in zh-CN. Screenshots under /tmp.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { buildUiIfStale, fullPageScreenshot, launchChromium, openSignedIn } from './browser.js';
import trainingEn from '../../plugins/training/web/src/locales/en.js';
import trainingZh from '../../plugins/training/web/src/locales/zh-CN.js';

const exec = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const API = '/api/plugins/training';
const SHOTS = {
  register: '/tmp/aiplat-training-checkpoint-register.png',
  registered: '/tmp/aiplat-training-checkpoint-registered.png',
  resources: '/tmp/aiplat-training-run-resources.png',
  resourcesZh: '/tmp/aiplat-training-run-resources-zh.png',
  attempts: '/tmp/aiplat-training-run-attempts.png',
};
const en = trainingEn;
const zh = trainingZh;
const TINY = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 259, max_position_embeddings: 128 };

/** Instruction records with a learnable pattern (as plugins/training/test/training.db.test.ts). */
function corpus(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(JSON.stringify({ instruction: `Count from ${i % 10}`, input: '', output: Array.from({ length: 6 }, (_, k) => (i + k) % 10).join(' ') }));
  return `${lines.join('\n')}\n`;
}

async function tarNames(file: string): Promise<string[]> {
  const names: string[] = [];
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    names.push(header.name);
    stream.on('end', next);
    stream.resume();
  });
  await new Promise<void>((resolve, reject) => {
    extract.on('finish', resolve);
    extract.on('error', reject);
    void readFile(file).then((bytes) => Readable.from([bytes]).pipe(extract), reject);
  });
  return names;
}

describe('training checkpoints and resources in Chromium', () => {
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  let runId = '';
  let targetModel = '';
  const pageErrors: string[] = [];

  beforeAll(async () => {
    buildUiIfStale();
    await exec('sh', [path.join(ROOT, 'plugins', 'training', 'runtime', 'worker', 'setup.sh')], { timeout: 600_000 });
    core = await startTestCore({ plugins: ['datasets', 'models', 'lineage', 'training'].map((p) => path.join(ROOT, 'plugins', p)) });
    const dataset = (await core.client.post('/api/plugins/datasets/datasets', { name: 'counting', taskType: 'instruction' })).body as { id: string };
    const commit = (await core.client.post(`/api/plugins/datasets/datasets/${dataset.id}/commits`, {})).body.id as string;
    const content = corpus(400);
    const sha = createHash('sha256').update(content).digest('hex');
    const put = await core.client.request('PUT', `/api/plugins/datasets/commits/${commit}/files/content?path=train.jsonl&sha256=${sha}`, {
      raw: Buffer.from(content),
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(put.status, put.text).toBe(200);
    const finished = await core.client.post(`/api/plugins/datasets/commits/${commit}/finish`, {});
    expect(finished.status, finished.text).toBe(201);
    const output = (await core.client.post('/api/plugins/models/models', { name: 'tiny-counter' })).body.id as string;
    targetModel = (await core.client.post('/api/plugins/models/models', { name: 'counter-checkpoints' })).body.id as string;

    // A short run through the API: a checkpoint at step 10, then done.
    const started = await core.client.post(`${API}/runs`, {
      name: 'ckpt-ui',
      template: { type: 'llama', config: TINY },
      datasetVersion: finished.body.id,
      datasetFormat: 'instruction',
      hyper: { learningRate: 0.003, maxSteps: 20, batchSize: 8, sequenceLength: 64, evalSplit: 0.1, evalInterval: 10, checkpointInterval: 10, seed: 7 },
      strategy: { id: 'single' },
      resources: { gpusPerNode: 0 },
      output: { model: output },
    });
    expect(started.status, started.text).toBe(201);
    runId = started.body.id as string;
    for (const until = Date.now() + 180_000; ; ) {
      const state = (await core.client.get(`${API}/runs/${runId}`)).body.state as string;
      if (['succeeded', 'failed', 'cancelled'].includes(state)) {
        expect(state).toBe('succeeded');
        break;
      }
      if (Date.now() > until) throw new Error(`run ${runId} still ${state}`);
      await new Promise((r) => setTimeout(r, 500));
    }

    browser = await launchChromium();
    page = await openSignedIn(browser, core.url, pageErrors);
  }, 700_000);
  afterAll(async () => {
    await browser?.close();
    await core?.stop();
  });

  const confirm = () => page.locator('.el-dialog [data-test=confirm]:visible').click();

  it('registers a checkpoint as a version of a model chosen in the dialog', async () => {
    await page.goto(`${core.url}/training/runs/${encodeURIComponent(runId)}`);
    await page.locator('[data-test=checkpoint-10]').waitFor();
    await page.click('[data-test=checkpoint-register-10]');
    const dialog = page.locator('.el-dialog:visible', { has: page.locator('[data-test=register-form]') });
    await dialog.waitFor();
    expect(await dialog.locator('.el-dialog__title').innerText()).toBe(en.checkpoint.registerTitle.replace('{step}', '10'));
    // A full fine-tuning checkpoint: no adapter hint.
    expect(await dialog.locator('[data-test=register-adapter-hint]').count()).toBe(0);
    await page.locator('[data-test=register-model]').click();
    await page.locator('[data-test=register-model-option-counter-checkpoints]:visible').click();
    await page.locator('textarea[data-test=register-description], [data-test=register-description] textarea').first().fill('half way');
    await page.screenshot({ path: SHOTS.register });
    await confirm();
    await page.locator('.el-message--success', { hasText: en.checkpoint.registered.replace('{number}', '1') }).waitFor();
    await dialog.waitFor({ state: 'hidden' });

    const versions = (await core.client.get(`/api/plugins/models/models/${targetModel}/versions`)).body.items as { id: string; source: { kind: string; ref: string }; files?: { path: string }[] }[];
    expect(versions).toHaveLength(1);
    expect(versions[0]!.source).toEqual({ kind: 'training', ref: runId });
    const version = (await core.client.get(`/api/plugins/models/versions/${versions[0]!.id}`)).body as { files: { path: string }[] };
    expect(version.files.map((f) => f.path)).toEqual(expect.arrayContaining(['model.safetensors', 'config.json']));
    const graph = (await core.client.get(`/api/plugins/lineage/graph?kind=models.version&id=${versions[0]!.id}&direction=up&depth=1`)).body as { edges: { from: { id: string }; relation: string; details?: Record<string, unknown> }[] };
    expect(graph.edges.find((e) => e.from.id === runId)).toMatchObject({ relation: 'checkpoint-of', details: { step: 10, description: 'half way' } });
    await fullPageScreenshot(page, SHOTS.registered);
  }, 120_000);

  it('downloads a checkpoint as a .tar with the weights and the trainer state', async () => {
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 60_000 }), page.click('[data-test=checkpoint-download-10]')]);
    expect(download.suggestedFilename()).toBe('ckpt-ui-step-10.tar');
    const file = await download.path();
    const names = await tarNames(file);
    expect(names).toEqual(expect.arrayContaining(['ckpt-ui-step-10/model.safetensors', 'ckpt-ui-step-10/trainer_state.json', 'ckpt-ui-step-10/config.json']));
  }, 120_000);

  it('shows the run’s replica and node in the Resources tab, and that it uses no GPU', async () => {
    await page.locator('[data-test=run-tabs] .el-tabs__item', { hasText: en.resources.tab }).click();
    const replica = page.locator('[data-test=resources-replica-0]');
    await replica.waitFor();
    const workload = (await core.client.get(`/api/v1/workloads/${(await core.client.get(`${API}/runs/${runId}`)).body.workloadId}`)).body as { placements: { nodeId: string }[] };
    expect(await replica.getAttribute('data-node')).toBe(workload.placements[0]!.nodeId);
    expect(await page.locator('[data-test=resources-restarts]').first().innerText()).toBe('0');
    expect(await page.locator('[data-test=resources-devices]').first().innerText()).toBe(en.resources.none);
    expect(await page.locator('[data-test=resources-cpu-only]').innerText()).toContain(en.resources.cpuOnly);
    await fullPageScreenshot(page, SHOTS.resources);
  }, 60_000);

  it('draws one loss curve over a cancelled and resumed run, and lists its attempts', async () => {
    const run = (await core.client.get(`${API}/runs/${runId}`)).body as { spec: Record<string, any> };
    const started = await core.client.post(`${API}/runs`, { ...run.spec, name: 'two-attempts-ui', hyper: { ...run.spec.hyper, maxSteps: 400, checkpointInterval: 0, evalInterval: 0 } });
    expect(started.status, started.text).toBe(201);
    const id = started.body.id as string;
    const lossCount = async (workloadId: string) =>
      ((await core.client.get(`/api/v1/workloads/${workloadId}/metrics?name=loss`)).body.series as { points: unknown[] }[])[0]?.points.length ?? 0;
    const settle = async () => {
      for (const until = Date.now() + 60_000; ; ) {
        const body = (await core.client.get(`${API}/runs/${id}`)).body as { state: string; checkpoints: { step: number }[] };
        if (['cancelled', 'failed', 'succeeded'].includes(body.state)) return body;
        if (Date.now() > until) throw new Error(`run ${id} still ${body.state}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    await expect.poll(() => lossCount(started.body.workloadId), { timeout: 120_000, interval: 250 }).toBeGreaterThanOrEqual(3);
    await core.client.post(`${API}/runs/${id}/cancel`);
    const step = (await settle()).checkpoints.at(-1)!.step;
    const resumed = await core.client.post(`${API}/runs/${id}/resume`, {});
    expect(resumed.status, resumed.text).toBe(200);
    await expect.poll(() => lossCount(resumed.body.workloadId), { timeout: 120_000, interval: 250 }).toBeGreaterThanOrEqual(3);
    await core.client.post(`${API}/runs/${id}/cancel`);
    await settle();
    const merged = (await core.client.get(`${API}/runs/${id}/metrics?name=loss`)).body as { series: { points: { step: number }[] }[] };
    const points = merged.series[0]!.points.length;
    expect(points).toBeGreaterThan(step);

    await page.goto(`${core.url}/training/runs/${encodeURIComponent(id)}`);
    const chart = page.locator('[data-test=run-loss-chart]');
    await chart.waitFor();
    // Both attempts' points in one curve: the first attempt's steps up to the checkpoint, then the second's.
    await expect.poll(async () => Number(await chart.getAttribute('data-points'))).toBe(points);
    await page.locator('[data-test=run-attempt-list]').waitFor();
    expect(await page.locator('[data-test=run-attempt-list]').getAttribute('data-count')).toBe('2');
    expect(await page.locator('[data-test=attempt-2]').getAttribute('data-from-step')).toBe(String(step));
    expect(await page.locator('[data-test=attempt-1]').getAttribute('data-from-step')).toBe('');
    await fullPageScreenshot(page, SHOTS.attempts);
  }, 300_000);

  it('speaks zh-CN', async () => {
    await page.goto(`${core.url}/training/runs/${encodeURIComponent(runId)}`);
    await page.locator('[data-test=checkpoint-10]').waitFor();
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-zh-CN]:visible').click();
    await page.locator('[data-test=run-tabs] .el-tabs__item', { hasText: zh.resources.tab }).click();
    await expect.poll(() => page.locator('[data-test=resources-cpu-only]').innerText()).toContain(zh.resources.cpuOnly);
    expect(await page.locator('[data-test=run-tabs] .el-tabs__item', { hasText: zh.resources.tab }).count()).toBe(1);
    expect(await page.locator('[data-test=checkpoint-register-10]').innerText()).toBe(zh.checkpoint.register);
    expect(await page.locator('[data-test=checkpoint-download-10]').innerText()).toBe(zh.checkpoint.download);
    await page.screenshot({ path: SHOTS.resourcesZh });
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-en]:visible').click();
    expect(pageErrors).toEqual([]);
  }, 60_000);
});
