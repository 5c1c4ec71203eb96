/**
 * The "New run" wizard's strategies in Chromium against a real core with the datasets, models,
 * lineage, training and trainer-deepspeed plugins, and the real Python worker with DeepSpeed (its venv
 * from plugins/trainer-deepspeed/setup.sh) on the local executor's CPU: DeepSpeed's options form is
 * made from its schema (stage buttons, offload switches, with their defaults); the refusals DeepSpeed
 * would answer show inline (stage 3 with LoRA, parameters offload below stage 3, offload on a CPU
 * run) and keep the wizard on its step; ZeRO-2 on two CPU processes is submitted, its options stored
 * in the run's spec, the estimate sharded over the world size, and it starts on the executor (then
 * is cancelled: DeepSpeed training is plugins/trainer-deepspeed/test/deepspeed.test.ts's); a DDP run
 * on two nodes sends `resources.nodes` (a gang of two replicas) and trains; a clone restores the
 * options, in zh-CN.
 * Screenshots under /tmp.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { buildUiIfStale, launchChromium, openSignedIn } from './browser.js';
import shellMessages from '../src/locales/shell.js';
import trainingEn from '../../plugins/training/web/src/locales/en.js';
import trainingZh from '../../plugins/training/web/src/locales/zh-CN.js';

const exec = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const API = '/api/plugins/training';
const SHOTS = {
  options: '/tmp/aiplat-training-strategy-options.png',
  refusal: '/tmp/aiplat-training-strategy-refusal.png',
  summary: '/tmp/aiplat-training-strategy-summary.png',
  nodes: '/tmp/aiplat-training-strategy-nodes.png',
  zh: '/tmp/aiplat-training-strategy-zh.png',
};
const en = trainingEn;
const zh = { ...shellMessages['zh-CN'], training: trainingZh };
const TINY = { hidden: '32', layers: '2', heads: '4', kvHeads: '2', intermediate: '64', vocab: '259', context: '128' };
const DEFAULTS = { stage: 2, offloadOptimizer: false, offloadParameters: false, overlapComm: true };

/** Instruction records with a learnable pattern (as plugins/training/test/training.db.test.ts). */
function corpus(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(JSON.stringify({ instruction: `Count from ${i % 10}`, input: '', output: Array.from({ length: 6 }, (_, k) => (i + k) % 10).join(' ') }));
  return `${lines.join('\n')}\n`;
}

describe('training strategies in the wizard (DeepSpeed options, nodes) in Chromium', () => {
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    buildUiIfStale();
    // The worker's venv with DeepSpeed (quick once installed).
    await exec('sh', [path.join(ROOT, 'plugins', 'trainer-deepspeed', 'setup.sh')], { timeout: 600_000 });
    core = await startTestCore({ plugins: ['datasets', 'models', 'lineage', 'training', 'trainer-deepspeed'].map((p) => path.join(ROOT, 'plugins', p)) });
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
    const model = await core.client.post('/api/plugins/models/models', { name: 'tiny-zero' });
    expect(model.status, model.text).toBe(201);
    browser = await launchChromium();
    page = await openSignedIn(browser, core.url, pageErrors);
  }, 700_000);
  afterAll(async () => {
    await browser?.close();
    await core?.stop();
  });

  /** The input of an Element Plus field, whichever element its data-test landed on. */
  const field = (name: string) => page.locator(`input[data-test=${name}], [data-test=${name}] input`).first();
  const pick = async (select: string, option: string) => {
    await page.locator(`[data-test=${select}]`).click();
    await page.locator(`[data-test=${option}]:visible`).click();
  };
  const wizard = () => page.locator('[data-test=run-wizard]');
  const classOf = async (test: string) => (await page.locator(`[data-test=${test}]`).getAttribute('class')) ?? '';
  const stepOf = () => page.locator('.run-wizard__form').getAttribute('data-step');
  const waitRun = async (id: string, states: string[], timeoutMs = 240_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const run = (await core.client.get(`${API}/runs/${id}`)).body as { state: string; reason: string | null };
      if (states.includes(run.state)) return run;
      if (Date.now() > until) throw new Error(`run ${id} still ${run.state} (${run.reason})`);
      await new Promise((r) => setTimeout(r, 300));
    }
  };

  /** Opens the wizard and fills the model, data and method steps; it ends on the resources step. */
  /** The run's first loss point arrives (its workload trains), then it is cancelled and ends so. */
  async function trainsThenCancel(id: string): Promise<void> {
    const until = Date.now() + 240_000;
    for (;;) {
      const run = (await core.client.get(`${API}/runs/${id}`)).body as { state: string; reason: string | null; workloadId: string };
      expect(['pending', 'running'], run.reason ?? '').toContain(run.state);
      const metrics = await core.client.get(`/api/v1/workloads/${run.workloadId}/metrics`);
      const loss = (metrics.body.series as { name: string; points: unknown[] }[]).find((x) => x.name === 'loss');
      if (loss && loss.points.length > 0) break;
      if (Date.now() > until) throw new Error(`run ${id} logged no loss point (${run.state})`);
      await new Promise((r) => setTimeout(r, 500));
    }
    expect((await core.client.post(`${API}/runs/${id}/cancel`)).status).toBe(200);
    const done = await waitRun(id, ['succeeded', 'failed', 'cancelled']);
    expect(['cancelled', 'succeeded'], done.reason ?? '').toContain(done.state);
  }

  /**
   * Until the run's workload runs on the executor (its processes started), then cancel it. For the
   * DeepSpeed run: training with it, to the end and through a cancel and resume, is the DeepSpeed
   * suite's (plugins/trainer-deepspeed/test/deepspeed.test.ts); waiting here for DeepSpeed's first
   * step too cost about 100 s of a 2-core CI machine for what that suite already shows.
   */
  async function startsThenCancel(id: string): Promise<void> {
    const until = Date.now() + 120_000;
    for (;;) {
      const run = (await core.client.get(`${API}/runs/${id}`)).body as { state: string; reason: string | null; workloadId: string };
      expect(['pending', 'running'], run.reason ?? '').toContain(run.state);
      const workload = run.workloadId ? (await core.client.get(`/api/v1/workloads/${run.workloadId}`)).body : undefined;
      if (workload?.state === 'running') {
        // Two processes through the launcher.
        expect(workload.spec.command.join(' ')).toContain('--nproc-per-node 2');
        break;
      }
      if (Date.now() > until) throw new Error(`run ${id} did not start (${run.state}, workload ${workload?.state})`);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect((await core.client.post(`${API}/runs/${id}/cancel`)).status).toBe(200);
    const done = await waitRun(id, ['succeeded', 'failed', 'cancelled']);
    expect(done.state, done.reason ?? '').toBe('cancelled');
  }

  async function fillToResources(name: string, method: 'full' | 'lora', maxSteps: number) {
    await page.goto(`${core.url}/training`);
    await page.locator('[data-test=training-page]').waitFor();
    await page.click('[data-test=training-new]');
    await wizard().waitFor();
    await field('wizard-name').fill(name);
    await page.click('[data-test=wizard-base-scratch]');
    for (const [key, value] of Object.entries(TINY)) await field(`tpl-${key}`).fill(value);
    await page.click('[data-test=wizard-next]');
    await pick('wizard-dataset', 'wizard-dataset-option-counting');
    await expect.poll(() => page.locator('[data-test=wizard-dataset-version]').innerText()).toContain('v1');
    await page.click('[data-test=wizard-format-instruction]');
    await page.click('[data-test=wizard-next]');
    await page.click(`[data-test=wizard-method-${method}]`);
    await field('hyper-learningRate').fill('0.003');
    await field('hyper-maxSteps').fill(String(maxSteps));
    await field('hyper-batchSize').fill('4');
    await field('hyper-sequenceLength').fill('64');
    await field('hyper-checkpointInterval').fill('0');
    await field('hyper-evalInterval').fill('0');
    await page.click('[data-test=wizard-next]');
    await expect.poll(stepOf).toBe('resources');
  }

  let dsRunId = '';

  it('shows DeepSpeed’s options from its schema and refuses what it cannot run, inline', async () => {
    await fillToResources('ds-ui', 'lora', 12);
    await field('wizard-gpus').fill('0');
    await field('wizard-processes').fill('2');
    // The single strategy: no options, one node.
    await page.locator('[data-test=wizard-strategy-single]').waitFor();
    expect(await page.locator('[data-test=wizard-strategy-options]').count()).toBe(0);
    expect(await field('wizard-nodes').isDisabled()).toBe(true);
    await page.locator('[data-test=wizard-nodes-single]').waitFor();

    // DeepSpeed: its four options, labelled, with the schema's defaults.
    await page.click('[data-test=wizard-strategy-deepspeed]');
    const optionsForm = page.locator('[data-test=wizard-strategy-options]');
    await optionsForm.waitFor();
    expect(await optionsForm.getAttribute('data-strategy')).toBe('deepspeed');
    const text = await optionsForm.innerText();
    for (const key of ['stage', 'offloadOptimizer', 'offloadParameters', 'overlapComm'] as const) expect(text).toContain(en.wizard.strategyOptions[key]);
    expect(text).toContain(en.wizard.distributed.hints.stage);
    for (const stage of [1, 2, 3]) await page.locator(`[data-test=option-stage-${stage}]`).waitFor();
    expect(await classOf('option-stage-2')).toContain('is-active');
    expect(await classOf('option-overlapComm')).toContain('is-checked');
    expect(await classOf('option-offloadOptimizer')).not.toContain('is-checked');
    expect(await field('wizard-nodes').isDisabled()).toBe(false);
    await page.screenshot({ path: SHOTS.options });

    // Stage 3 with LoRA: refused inline, and Next stays on this step.
    await page.click('[data-test=option-stage-3]');
    await expect.poll(() => wizard().innerText()).toContain(en.wizard.distributed.checks.stage3Lora);
    await pick('wizard-output', 'wizard-output-option-tiny-zero');
    await page.click('[data-test=wizard-next]');
    await page.locator('[data-test=wizard-invalid]').waitFor();
    expect(await stepOf()).toBe('resources');
    await page.screenshot({ path: SHOTS.refusal });

    // Offload on a CPU run; parameters offload below stage 3.
    await page.click('[data-test=option-stage-2]');
    await expect.poll(() => wizard().innerText()).not.toContain(en.wizard.distributed.checks.stage3Lora);
    await page.click('[data-test=option-offloadOptimizer]');
    await expect.poll(() => wizard().innerText()).toContain(en.wizard.distributed.checks.offloadCpu);
    await page.click('[data-test=option-offloadOptimizer]');
    await expect.poll(() => wizard().innerText()).not.toContain(en.wizard.distributed.checks.offloadCpu);
    await page.click('[data-test=option-offloadParameters]');
    await expect.poll(() => wizard().innerText()).toContain(en.wizard.distributed.checks.offloadParameters);
    await page.click('[data-test=option-offloadParameters]');
    await expect.poll(() => wizard().innerText()).not.toContain(en.wizard.distributed.checks.offloadParameters);
  }, 240_000);

  it('submits ZeRO-2 on two CPU processes: the options in the summary and the run’s spec, and it starts', async () => {
    await page.click('[data-test=wizard-next]');
    await expect.poll(stepOf).toBe('summary');
    const request = JSON.parse(await page.locator('[data-test=wizard-request]').innerText()) as Record<string, any>;
    expect(request.strategy).toEqual({ id: 'deepspeed', options: DEFAULTS });
    expect(request.resources).toEqual({ gpusPerNode: 0, processesPerNode: 2, nodes: 1 });
    expect(request.method).toBe('lora');
    // The review: options and world size.
    expect(await page.locator('[data-test=wizard-summary-option-stage]').innerText()).toBe('2');
    expect(await page.locator('[data-test=wizard-summary-option-overlapComm]').innerText()).toBe(en.wizard.distributed.on);
    expect(await page.locator('[data-test=wizard-summary-option-offloadOptimizer]').innerText()).toBe(en.wizard.distributed.off);
    expect(await page.locator('[data-test=wizard-summary-world]').getAttribute('data-value')).toBe('2');
    expect(await page.locator('[data-test=wizard-summary-world]').innerText()).toBe('1 × 2 = 2');
    // ZeRO-2 over 2 processes, LoRA (r 8 on q_proj and v_proj): the frozen weights whole, the adapter's
    // gradients and Adam state halved.
    const total = Number(await page.locator('[data-test=wizard-summary-parameters]').innerText().then((s) => s.replace(/[^\d]/g, '')));
    const adapter = 2 * (8 * (32 + 32) + 8 * (32 + 16));
    expect(Number(await page.locator('[data-test=wizard-memory]').getAttribute('data-bytes'))).toBe(4 * total + 4 * adapter + (4 * adapter) / 2 + (8 * adapter) / 2);
    await page.screenshot({ path: SHOTS.summary });

    await page.click('[data-test=wizard-submit]');
    await page.waitForURL(/\/training\/runs\/[^/]+$/, { timeout: 30_000 });
    dsRunId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    const run = (await core.client.get(`${API}/runs/${dsRunId}`)).body as { strategy: string; spec: { strategy: Record<string, unknown>; resources: Record<string, unknown> } };
    expect(run.strategy).toBe('deepspeed');
    expect(run.spec.strategy).toEqual({ id: 'deepspeed', options: DEFAULTS });
    expect(run.spec.resources).toMatchObject({ gpusPerNode: 0, processesPerNode: 2, nodes: 1 });
    // It starts on the executor, as submitted; then it is cancelled (training with DeepSpeed is the DeepSpeed suite's).
    await startsThenCancel(dsRunId);
  }, 360_000);

  it('sends the nodes of a DDP run: two nodes, a gang of two replicas', async () => {
    await fillToResources('ddp-two-nodes', 'full', 6);
    await field('wizard-gpus').fill('0');
    await field('wizard-processes').fill('1');
    await page.click('[data-test=wizard-strategy-ddp]');
    expect(await page.locator('[data-test=wizard-strategy-options]').count()).toBe(0);
    await field('wizard-nodes').fill('65');
    await expect.poll(() => wizard().innerText()).toContain(en.wizard.errors.integer.replace('{min}', '1').replace('{max}', '64'));
    await field('wizard-nodes').fill('2');
    await pick('wizard-output', 'wizard-output-option-tiny-zero');
    await page.screenshot({ path: SHOTS.nodes });
    await page.click('[data-test=wizard-next]');
    await expect.poll(stepOf).toBe('summary');
    const request = JSON.parse(await page.locator('[data-test=wizard-request]').innerText()) as Record<string, any>;
    expect(request.strategy).toEqual({ id: 'ddp' });
    expect(request.resources).toEqual({ gpusPerNode: 0, processesPerNode: 1, nodes: 2 });
    expect(await page.locator('[data-test=wizard-summary-world]').getAttribute('data-value')).toBe('2');
    expect(await page.locator('[data-test=wizard-summary-world]').innerText()).toBe('2 × 1 = 2');
    const sent = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith(`${API}/runs`));
    await page.click('[data-test=wizard-submit]');
    expect((await sent).postDataJSON()).toMatchObject({ resources: { nodes: 2 } });
    await page.waitForURL(/\/training\/runs\/[^/]+$/, { timeout: 30_000 });
    const id = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    const run = (await core.client.get(`${API}/runs/${id}`)).body as { workloadId: string; spec: { resources: Record<string, unknown> } };
    expect(run.spec.resources).toMatchObject({ gpusPerNode: 0, processesPerNode: 1, nodes: 2 });
    const workload = await core.client.get(`/api/v1/workloads/${run.workloadId}`);
    expect(workload.body).toMatchObject({ spec: { replicas: 2 } });
    // Both nodes train (a loss point from the gang); to the end is training.db.test.ts's two-node run.
    await trainsThenCancel(id);
  }, 300_000);

  it('restores the options on a clone, and speaks zh-CN', async () => {
    await page.goto(`${core.url}/training`);
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-zh-CN]:visible').click();
    await expect.poll(() => page.locator('[data-test=training-new]').innerText()).toBe(zh.training.list.new);
    await page.locator('[data-test=run-clone-ds-ui]').click();
    await wizard().waitFor();
    await expect.poll(() => field('wizard-name').inputValue()).toBe('ds-ui-clone');
    await page.click('[data-test=wizard-next]');
    await expect.poll(() => page.locator('[data-test=wizard-dataset-version]').innerText()).toContain('v1');
    await page.click('[data-test=wizard-next]');
    await page.click('[data-test=wizard-next]');
    await expect.poll(stepOf).toBe('resources');
    const optionsForm = page.locator('[data-test=wizard-strategy-options]');
    await optionsForm.waitFor();
    const text = await optionsForm.innerText();
    expect(text).toContain(zh.training.wizard.strategyOptions.stage);
    expect(text).toContain(zh.training.wizard.strategyOptions.offloadOptimizer);
    expect(await wizard().innerText()).toContain(zh.training.wizard.distributed.options);
    expect(await classOf('option-stage-2')).toContain('is-active');
    expect(await classOf('option-overlapComm')).toContain('is-checked');
    expect(await field('wizard-processes').inputValue()).toBe('2');
    await page.click('[data-test=option-stage-3]');
    await expect.poll(() => wizard().innerText()).toContain(zh.training.wizard.distributed.checks.stage3Lora);
    await page.waitForTimeout(300);
    await page.screenshot({ path: SHOTS.zh });
    await page.click('[data-test=option-stage-1]');
    await expect.poll(() => wizard().innerText()).not.toContain(zh.training.wizard.distributed.checks.stage3Lora);
    await page.click('[data-test=wizard-next]');
    await expect.poll(stepOf).toBe('summary');
    const request = JSON.parse(await page.locator('[data-test=wizard-request]').innerText()) as Record<string, any>;
    expect(request.strategy).toEqual({ id: 'deepspeed', options: { ...DEFAULTS, stage: 1 } });
    expect(await wizard().innerText()).toContain(zh.training.wizard.distributed.worldCpu);
    expect(await page.locator('[data-test=wizard-summary-option-overlapComm]').innerText()).toBe(zh.training.wizard.distributed.on);
    await page.keyboard.press('Escape');
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-en]:visible').click();
    expect(pageErrors).toEqual([]);
  }, 120_000);
});
