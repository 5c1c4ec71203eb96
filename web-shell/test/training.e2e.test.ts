/**
 * The training pages in Chromium against a real core with the datasets, models, lineage and training
 * plugins, and the real Python worker (its venv from plugins/training/runtime/worker/setup.sh) running on the
 * local executor's CPU: a dataset version and an output model are made through the API; the "New
 * run" wizard checks its fields inline (a learning rate ≤ 0, heads that do not divide the hidden
 * size), keeps QLoRA off without GPUs, estimates the parameters (checked against what the worker
 * counts) and the memory, and submits a tiny Llama from scratch; the run page's loss curve gets
 * points while it trains; Cancel leaves a checkpoint, Resume starts attempt 2 from it, and it is
 * cancelled again; the list shows the run; the wizard speaks zh-CN. Screenshots under /tmp.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { buildUiIfStale, fullPageScreenshot, launchChromium, openSignedIn } from './browser.js';
import shellMessages from '../src/locales/shell.js';
import trainingEn from '../../plugins/training/web/src/locales/en.js';
import trainingZh from '../../plugins/training/web/src/locales/zh-CN.js';

const exec = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const API = '/api/plugins/training';
const SHOTS = {
  wizard: '/tmp/aiplat-training-wizard.png',
  invalid: '/tmp/aiplat-training-wizard-invalid.png',
  summary: '/tmp/aiplat-training-wizard-summary.png',
  running: '/tmp/aiplat-training-run-running.png',
  cancelled: '/tmp/aiplat-training-run-cancelled.png',
  resumed: '/tmp/aiplat-training-run-resumed.png',
  list: '/tmp/aiplat-training-list.png',
  wizardZh: '/tmp/aiplat-training-wizard-zh.png',
};
const en = trainingEn;
const zh = { ...shellMessages['zh-CN'], training: trainingZh };
const TINY = { hidden: '32', layers: '2', heads: '4', kvHeads: '2', intermediate: '64', vocab: '259', context: '128' };

/** Instruction records with a learnable pattern (as plugins/training/test/training.db.test.ts). */
function corpus(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(JSON.stringify({ instruction: `Count from ${i % 10}`, input: '', output: Array.from({ length: 6 }, (_, k) => (i + k) % 10).join(' ') }));
  return `${lines.join('\n')}\n`;
}

describe('training in Chromium', () => {
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  let runId = '';
  const pageErrors: string[] = [];

  beforeAll(async () => {
    buildUiIfStale();
    await exec('sh', [path.join(ROOT, 'plugins', 'training', 'runtime', 'worker', 'setup.sh')], { timeout: 600_000 });
    core = await startTestCore({ plugins: ['datasets', 'models', 'lineage', 'training'].map((p) => path.join(ROOT, 'plugins', p)) });
    // A dataset version, uploaded in one commit the way the API test does, and the output model.
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
    const model = await core.client.post('/api/plugins/models/models', { name: 'tiny-counter' });
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
  const state = () => page.locator('[data-test=run-state]').getAttribute('data-state');
  const runJson = async () => (await core.client.get(`${API}/runs/${runId}`)).body as { state: string; attempts: number; workloadId: string; checkpoints: { step: number }[] };
  const confirm = () => page.locator('.el-dialog [data-test=confirm]:visible').click();

  it('goes through the wizard: inline checks, a tiny Llama from scratch, the summary, submit', async () => {
    await page.click('[data-test=nav-training-nav]');
    await page.waitForURL(`${core.url}/training`);
    await page.locator('[data-test=training-page]').waitFor();
    await page.click('[data-test=training-new]');
    const wizard = page.locator('[data-test=run-wizard]');
    await wizard.waitFor();

    // 1. the model: from scratch, tiny sizes.
    await page.click('[data-test=wizard-next]');
    await page.locator('[data-test=wizard-invalid]').waitFor();
    await expect.poll(() => wizard.innerText()).toContain(en.wizard.errors.required);
    await field('wizard-name').fill('ui-run');
    await page.click('[data-test=wizard-base-scratch]');
    for (const [key, value] of Object.entries(TINY)) await field(`tpl-${key}`).fill(value);
    await field('tpl-heads').fill('5');
    await expect.poll(() => wizard.innerText()).toContain(en.wizard.errors.headsDivide);
    await field('tpl-heads').fill('4');
    await expect.poll(() => wizard.innerText()).not.toContain(en.wizard.errors.headsDivide);
    const parameters = Number(await page.locator('[data-test=wizard-parameters]').getAttribute('data-value'));
    expect(parameters).toBeGreaterThan(0);
    await page.screenshot({ path: SHOTS.wizard });
    await page.click('[data-test=wizard-next]');

    // 2. the data.
    await pick('wizard-dataset', 'wizard-dataset-option-counting');
    await expect.poll(() => page.locator('[data-test=wizard-dataset-version]').innerText()).toContain('v1');
    await page.click('[data-test=wizard-format-instruction]');
    await page.click('[data-test=wizard-next]');

    // 3. the method and hyper-parameters: QLoRA needs GPUs; a learning rate must be > 0.
    expect(await page.locator('[data-test=wizard-method-qlora] input').isDisabled()).toBe(true);
    await page.locator('[data-test=wizard-qlora-reason]').waitFor();
    await page.click('[data-test=wizard-method-lora]');
    await page.locator('[data-test=wizard-lora]').waitFor();
    await page.click('[data-test=wizard-method-full]');
    await page.locator('[data-test=wizard-lora]').waitFor({ state: 'detached' });
    await field('hyper-learningRate').fill('-1');
    await expect.poll(() => wizard.innerText()).toContain(en.wizard.errors.positive.replace('{max}', '1'));
    await page.click('[data-test=wizard-next]');
    await page.locator('[data-test=wizard-invalid]').waitFor();
    await page.screenshot({ path: SHOTS.invalid });
    await field('hyper-learningRate').fill('0.003');
    await field('hyper-maxSteps').fill('3000');
    await field('hyper-batchSize').fill('8');
    await field('hyper-sequenceLength').fill('64');
    await field('hyper-checkpointInterval').fill('0');
    await field('hyper-evalInterval').fill('20');
    await page.click('[data-test=wizard-next]');

    // 4. resources and the output model.
    await page.locator('[data-test=wizard-strategy-single]').waitFor();
    await field('wizard-gpus').fill('0');
    await field('wizard-processes').fill('1');
    await pick('wizard-output', 'wizard-output-option-tiny-counter');
    await page.click('[data-test=wizard-next]');

    // 5. the summary: the request as it will be sent, the estimate.
    const request = JSON.parse(await page.locator('[data-test=wizard-request]').innerText()) as Record<string, any>;
    expect(request).toMatchObject({
      name: 'ui-run',
      template: { type: 'llama', config: { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 64, vocab_size: 259, max_position_embeddings: 128 } },
      datasetFormat: 'instruction',
      method: 'full',
      hyper: { learningRate: 0.003, maxSteps: 3000, batchSize: 8, sequenceLength: 64, checkpointInterval: 0 },
      strategy: { id: 'single' },
      resources: { gpusPerNode: 0, processesPerNode: 1 },
    });
    // Full fine-tuning in float32: weights + gradients + Adam's two moments.
    expect(Number(await page.locator('[data-test=wizard-memory]').getAttribute('data-bytes'))).toBe(parameters * 16);
    await page.screenshot({ path: SHOTS.summary });
    await page.click('[data-test=wizard-submit]');
    await page.waitForURL(/\/training\/runs\/[^/]+$/, { timeout: 30_000 });
    runId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    await page.locator('[data-test=run-header]').waitFor();

    // The worker counts the parameters of what it built: the wizard's count is the same.
    const wid = (await runJson()).workloadId;
    await expect
      .poll(
        async () => {
          const logs = (await core.client.get(`/api/v1/workloads/${wid}/logs?limit=1000`)).body as { items: { text: string }[] };
          const started = logs.items
            .map((i) => i.text)
            .join('')
            .split('\n')
            .find((l) => l.includes('"event": "started"') || l.includes('"event":"started"'));
          return started ? (JSON.parse(started.slice(started.indexOf('{'))) as { parameters: number }).parameters : undefined;
        },
        { timeout: 120_000, interval: 500 },
      )
      .toBe(parameters);
  }, 240_000);

  it('follows the loss curve while the run trains', async () => {
    await expect.poll(state, { timeout: 120_000 }).toBe('running');
    const latest = page.locator('[data-test=run-latest-loss]');
    await expect.poll(async () => Number(await latest.getAttribute('data-points')), { timeout: 60_000, interval: 250 }).toBeGreaterThanOrEqual(2);
    const firstStep = Number(await latest.getAttribute('data-step'));
    await expect.poll(async () => Number(await latest.getAttribute('data-step')), { timeout: 30_000, interval: 250 }).toBeGreaterThan(firstStep);
    await page.locator('[data-test=run-loss-chart] canvas').first().waitFor();
    expect(Number(await page.locator('[data-test=run-lr-chart]').getAttribute('data-points'))).toBeGreaterThan(0);
    await expect.poll(async () => Number(await page.locator('[data-test=run-logs]').getAttribute('data-lines'))).toBeGreaterThan(0);
    await fullPageScreenshot(page, SHOTS.running);
  }, 180_000);

  it('cancels the run (a checkpoint is saved) and resumes it from the checkpoint', async () => {
    await page.click('[data-test=run-cancel]');
    await confirm();
    await expect.poll(state, { timeout: 60_000 }).toBe('cancelled');
    await expect.poll(() => page.locator('[data-test^=checkpoint-]').count(), { timeout: 20_000 }).toBeGreaterThanOrEqual(1);
    const stopped = await runJson();
    expect(stopped.state).toBe('cancelled');
    const step = stopped.checkpoints.at(-1)!.step;
    await page.locator(`[data-test=checkpoint-${step}]`).waitFor();
    await fullPageScreenshot(page, SHOTS.cancelled);

    await page.click('[data-test=run-resume]');
    await expect.poll(() => page.locator('[data-test=resume-step]').innerText()).toBe(String(step));
    await confirm();
    await expect.poll(() => page.locator('[data-test=run-attempts]').innerText(), { timeout: 20_000 }).toBe('2');
    await expect.poll(state, { timeout: 120_000 }).toBe('running');
    // The new attempt's curve goes on from the first attempt's: past the checkpoint's step, the earlier points kept.
    const latest = page.locator('[data-test=run-latest-loss]');
    await expect.poll(async () => Number(await latest.getAttribute('data-step')), { timeout: 60_000, interval: 250 }).toBeGreaterThan(step);
    expect(Number(await latest.getAttribute('data-points'))).toBeGreaterThan(step);
    await fullPageScreenshot(page, SHOTS.resumed);

    await page.click('[data-test=run-cancel]');
    await confirm();
    await expect.poll(state, { timeout: 60_000 }).toBe('cancelled');
    expect((await runJson()).attempts).toBe(2);
  }, 300_000);

  it('lists the run with its state and attempts', async () => {
    await page.click('[data-test=run-back]');
    await page.waitForURL(`${core.url}/training`);
    await page.locator('[data-test=run-link-ui-run]').waitFor();
    expect(await page.locator('[data-test=run-state-ui-run]').getAttribute('data-state')).toBe('cancelled');
    expect(await page.locator('[data-test=run-attempts-ui-run]').innerText()).toBe('2');
    await pick('training-state-filter', 'training-state-running');
    await page.locator('[data-test=run-link-ui-run]').waitFor({ state: 'detached' });
    await pick('training-state-filter', 'training-state-cancelled');
    await page.locator('[data-test=run-link-ui-run]').waitFor();
    await fullPageScreenshot(page, SHOTS.list);
  });

  it('speaks zh-CN', async () => {
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-zh-CN]:visible').click();
    await expect.poll(() => page.locator('[data-test=training-new]').innerText()).toBe(zh.training.list.new);
    await page.click('[data-test=training-new]');
    const wizard = page.locator('[data-test=run-wizard]');
    await wizard.waitFor();
    expect(await wizard.locator('.el-dialog__title').innerText()).toBe(zh.training.wizard.title);
    expect(await wizard.innerText()).toContain(zh.training.wizard.name);
    expect(await wizard.innerText()).toContain(zh.training.wizard.base.hidden);
    await page.waitForTimeout(400);
    await page.screenshot({ path: SHOTS.wizardZh });
    await page.keyboard.press('Escape');
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-en]:visible').click();
    expect(pageErrors).toEqual([]);
  });
});
