/**
 * The training history pages in Chromium against a real core with the datasets, models, lineage and
 * training plugins, and the real Python worker (its venv from plugins/training/runtime/worker/setup.sh) on
 * the local executor's CPU: three runs made through the API (two tiny Llamas trained to the end with
 * different hyper-parameters, one cancelled); the list filtered by name (kept in the URL across a
 * reload), state and dates; two runs selected and compared (both curves, the hyper-parameter diff
 * with "only differences", the results); a run cloned into the wizard, edited and started; the
 * wizard's choices saved as a template and a new run started from it; and the list speaks zh-CN.
 * Screenshots under /tmp.
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
  filtered: '/tmp/aiplat-training-history-filtered.png',
  compare: '/tmp/aiplat-training-compare.png',
  clone: '/tmp/aiplat-training-clone.png',
  template: '/tmp/aiplat-training-template.png',
  listZh: '/tmp/aiplat-training-history-zh.png',
};
const en = trainingEn;
const zh = { ...shellMessages['zh-CN'], training: trainingZh };
const TINY = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 259, max_position_embeddings: 128 };

/** Instruction records with a learnable pattern (as plugins/training/test/training.db.test.ts). */
function corpus(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(JSON.stringify({ instruction: `Count from ${i % 10}`, input: '', output: Array.from({ length: 6 }, (_, k) => (i + k) % 10).join(' ') }));
  return `${lines.join('\n')}\n`;
}

describe('training history, compare, clone and templates in Chromium', () => {
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  let datasetVersion = '';
  let outputModel = '';
  const pageErrors: string[] = [];

  const request = (name: string, hyper: Record<string, unknown>) => ({
    name,
    template: { type: 'llama', config: TINY },
    datasetVersion,
    datasetFormat: 'instruction',
    hyper: { batchSize: 8, sequenceLength: 64, evalSplit: 0.1, evalInterval: 5, checkpointInterval: 0, seed: 7, ...hyper },
    strategy: { id: 'single' },
    resources: { gpusPerNode: 0, processesPerNode: 1 },
    output: { model: outputModel },
  });
  const waitRun = async (id: string, states: string[], timeoutMs = 180_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const run = (await core.client.get(`${API}/runs/${id}`)).body as { state: string; reason: string | null };
      if (states.includes(run.state)) return run;
      if (Date.now() > until) throw new Error(`run ${id} still ${run.state} (${run.reason})`);
      await new Promise((r) => setTimeout(r, 300));
    }
  };

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
    datasetVersion = finished.body.id as string;
    const model = await core.client.post('/api/plugins/models/models', { name: 'tiny-counter' });
    expect(model.status, model.text).toBe(201);
    outputModel = model.body.id as string;

    // Two short runs trained to the end, with different hyper-parameters, and one cancelled at once.
    for (const [name, hyper] of [
      ['e2e-alpha', { learningRate: 0.003, maxSteps: 10 }],
      ['e2e-beta', { learningRate: 0.001, maxSteps: 12 }],
    ] as const) {
      const res = await core.client.post(`${API}/runs`, request(name, hyper));
      expect(res.status, res.text).toBe(201);
      const done = await waitRun(res.body.id, ['succeeded', 'failed', 'cancelled']);
      expect(done.state, done.reason ?? '').toBe('succeeded');
    }
    const other = await core.client.post(`${API}/runs`, request('other-run', { learningRate: 0.003, maxSteps: 400 }));
    expect(other.status, other.text).toBe(201);
    await core.client.post(`${API}/runs/${other.body.id}/cancel`);
    await waitRun(other.body.id, ['cancelled', 'failed', 'succeeded']);

    browser = await launchChromium();
    page = await openSignedIn(browser, core.url, pageErrors);
  }, 900_000);
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
  const runRow = (name: string) => page.locator('[data-test=training-table] tr', { has: page.locator(`[data-test=run-link-${name}]`) });
  const total = async () => Number(await page.locator('[data-test=training-total]').getAttribute('data-total'));

  it('filters the list by name (kept in the URL across a reload), state and dates', async () => {
    await page.click('[data-test=nav-training-nav]');
    await page.waitForURL(`${core.url}/training`);
    await page.locator('[data-test=run-link-other-run]').waitFor();
    await expect.poll(total).toBe(3);

    await field('training-search').fill('E2E');
    await page.waitForURL(/[?&]q=E2E/);
    await page.locator('[data-test=run-link-other-run]').waitFor({ state: 'detached' });
    await expect.poll(total).toBe(2);
    await page.reload();
    await page.locator('[data-test=run-link-e2e-alpha]').waitFor();
    expect(await field('training-search').inputValue()).toBe('E2E');
    expect(await page.locator('[data-test=run-link-other-run]').count()).toBe(0);
    await expect.poll(total).toBe(2);

    await pick('training-state-filter', 'training-state-cancelled');
    await page.waitForURL(/state=cancelled/);
    await expect.poll(() => page.locator('[data-test=training-empty]').innerText()).toBe(en.history.emptyFiltered);
    await pick('training-state-filter', 'training-state-succeeded');
    await page.locator('[data-test=run-link-e2e-beta]').waitFor();
    await fullPageScreenshot(page, SHOTS.filtered);

    // Dates: a day long ago has no run; today has them all.
    await page.goto(`${core.url}/training?since=2001-01-01&until=2001-01-31`);
    await expect.poll(() => page.locator('[data-test=training-empty]').innerText()).toBe(en.history.emptyFiltered);
    await expect.poll(total).toBe(0);
    const today = new Date();
    const day = `${today.getFullYear()}-${String(today.getMonth() + 1).padStart(2, '0')}-${String(today.getDate()).padStart(2, '0')}`;
    await page.goto(`${core.url}/training?since=${day}&until=${day}`);
    await page.locator('[data-test=run-link-other-run]').waitFor();
    await expect.poll(total).toBe(3);
    await page.click('[data-test=training-clear-filters]');
    await page.waitForURL(`${core.url}/training`);
  }, 120_000);

  it('selects two runs and compares them: both curves, the hyper-parameter diff, the results', async () => {
    await page.locator('[data-test=run-link-e2e-alpha]').waitFor();
    expect(await page.locator('[data-test=training-compare]').isDisabled()).toBe(true);
    await runRow('e2e-alpha').locator('.el-checkbox').click();
    await runRow('e2e-beta').locator('.el-checkbox').click();
    await expect.poll(() => page.locator('[data-test=training-selected]').getAttribute('data-count')).toBe('2');
    await page.click('[data-test=training-compare]');
    await page.waitForURL(/\/training\/compare\?ids=/);
    const ids = new URL(page.url()).searchParams.get('ids')!.split(',');
    expect(ids).toHaveLength(2);

    // One series per run on the loss, eval-loss and learning-rate charts.
    for (const chart of ['loss', 'eval', 'lr']) {
      const el = page.locator(`[data-test=compare-${chart}-chart]`);
      await expect.poll(() => el.getAttribute('data-series'), { timeout: 20_000 }).toBe('2');
      expect((await el.getAttribute('data-names'))!.split(',').sort()).toEqual(['e2e-alpha', 'e2e-beta']);
    }
    await page.locator('[data-test=compare-loss-chart] canvas').first().waitFor();

    // The diff: differing rows flagged, same ones not; "only differences" hides the same ones.
    expect(await page.locator('[data-test="diff-hyper.maxSteps"]').getAttribute('data-differs')).toBe('true');
    expect(await page.locator('[data-test="diff-hyper.learningRate"]').getAttribute('data-differs')).toBe('true');
    expect(await page.locator('[data-test="diff-datasetVersion"]').getAttribute('data-differs')).toBe('false');
    expect(await page.locator('[data-test=diff-name]').count()).toBe(0);
    expect(await page.locator('.training-compare__differs').count()).toBeGreaterThanOrEqual(2);
    const maxSteps = [await page.locator('[data-test="diff-hyper.maxSteps-0"]').innerText(), await page.locator('[data-test="diff-hyper.maxSteps-1"]').innerText()];
    expect(maxSteps.sort()).toEqual(['10', '12']);
    await page.locator('[data-test=compare-only-differences]').click();
    await page.locator('[data-test="diff-datasetVersion"]').waitFor({ state: 'detached' });
    await page.locator('[data-test="diff-hyper.maxSteps"]').waitFor();

    // The results: the steps each trained, both succeeded with a model version.
    const steps = [await page.locator('[data-test=result-steps-0]').innerText(), await page.locator('[data-test=result-steps-1]').innerText()];
    expect(steps.sort()).toEqual(['10', '12']);
    expect(await page.locator('[data-test=result-state-0]').innerText()).toContain(en.state.succeeded);
    expect(Number((await page.locator('[data-test=result-lastLoss-0]').innerText()).replace(/,/g, ''))).toBeGreaterThan(0);
    expect(await page.locator('[data-test=result-tokensPerS-0]').innerText()).not.toBe('—');
    await fullPageScreenshot(page, SHOTS.compare);
    await page.click('[data-test=compare-back]');
    await page.waitForURL(`${core.url}/training`);
  }, 120_000);

  it('clones a run into the wizard, prefilled and editable, and starts it', async () => {
    await page.locator('[data-test=run-clone-e2e-beta]').click();
    const wizard = page.locator('[data-test=run-wizard]');
    await wizard.waitFor();
    await expect.poll(() => field('wizard-name').inputValue()).toBe('e2e-beta-clone');
    expect(await field('tpl-hidden').inputValue()).toBe('32');
    await page.screenshot({ path: SHOTS.clone });
    await field('wizard-name').fill('e2e-gamma');
    await page.click('[data-test=wizard-next]');
    await expect.poll(() => page.locator('[data-test=wizard-dataset-version]').innerText()).toContain('v1');
    await page.click('[data-test=wizard-next]');
    expect(await field('hyper-maxSteps').inputValue()).toBe('12');
    expect(await field('hyper-learningRate').inputValue()).toBe('0.001');
    await field('hyper-maxSteps').fill('6');
    await page.click('[data-test=wizard-next]');
    await expect.poll(() => page.locator('[data-test=wizard-output]').innerText()).toContain('tiny-counter');
    await page.click('[data-test=wizard-next]');
    const sent = JSON.parse(await page.locator('[data-test=wizard-request]').innerText()) as Record<string, any>;
    expect(sent).toMatchObject({ name: 'e2e-gamma', datasetVersion, datasetFormat: 'instruction', hyper: { learningRate: 0.001, maxSteps: 6, evalInterval: 5, checkpointInterval: 0 }, output: { model: outputModel } });
    await page.click('[data-test=wizard-submit]');
    await page.waitForURL(/\/training\/runs\/[^/]+$/, { timeout: 30_000 });
    const id = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    const run = (await core.client.get(`${API}/runs/${id}`)).body as { name: string; spec: { hyper: { maxSteps: number; learningRate: number } } };
    expect(run.name).toBe('e2e-gamma');
    expect(run.spec.hyper).toMatchObject({ maxSteps: 6, learningRate: 0.001 });
  }, 120_000);

  it('saves the wizard’s choices as a template and starts a new run from it', async () => {
    await page.goto(`${core.url}/training`);
    await page.locator('[data-test=run-clone-e2e-alpha]').click();
    const wizard = page.locator('[data-test=run-wizard]');
    await wizard.waitFor();
    await expect.poll(() => field('wizard-name').inputValue()).toBe('e2e-alpha-clone');
    await expect.poll(async () => (await core.client.get(`/api/plugins/datasets/versions/${datasetVersion}`)).status).toBe(200);
    // The dataset version is filled in before the template is saved.
    await page.click('[data-test=wizard-next]');
    await expect.poll(() => page.locator('[data-test=wizard-dataset-version]').innerText()).toContain('v1');
    await page.click('[data-test=wizard-save-template]');
    await page.locator('[data-test=template-dialog]').waitFor();
    await field('template-name').fill('tiny recipe');
    await field('template-description').fill('10 steps of a tiny Llama');
    await page.click('[data-test=template-save]');
    await page.locator('[data-test=template-dialog]').waitFor({ state: 'hidden' });
    const templates = (await core.client.get(`${API}/templates`)).body.items as { name: string; body: Record<string, any> }[];
    expect(templates.map((x) => x.name)).toEqual(['tiny recipe']);
    expect(templates[0]!.body).toMatchObject({ datasetVersion, hyper: { maxSteps: 10, learningRate: 0.003 }, template: { type: 'llama' } });
    expect(templates[0]!.body.name).toBeUndefined();
    expect(templates[0]!.body.output).toBeUndefined();
    await page.keyboard.press('Escape');
    await wizard.waitFor({ state: 'hidden' });

    // A new run from the template: everything but the name and the output model filled in.
    await page.click('[data-test=training-new]');
    await wizard.waitFor();
    expect(await field('wizard-name').inputValue()).toBe('');
    await field('tpl-hidden').fill('64');
    await pick('wizard-template', 'wizard-template-option-tiny\\ recipe');
    await expect.poll(() => field('tpl-hidden').inputValue()).toBe('32');
    await field('wizard-name').fill('e2e-from-template');
    await page.screenshot({ path: SHOTS.template });
    await page.click('[data-test=wizard-next]');
    await expect.poll(() => page.locator('[data-test=wizard-dataset-version]').innerText()).toContain('v1');
    await page.click('[data-test=wizard-next]');
    expect(await field('hyper-maxSteps').inputValue()).toBe('10');
    await page.click('[data-test=wizard-next]');
    await pick('wizard-output', 'wizard-output-option-tiny-counter');
    await page.click('[data-test=wizard-next]');
    await page.click('[data-test=wizard-submit]');
    await page.waitForURL(/\/training\/runs\/[^/]+$/, { timeout: 30_000 });
    const id = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    const run = (await core.client.get(`${API}/runs/${id}`)).body as { name: string; spec: Record<string, any> };
    expect(run).toMatchObject({ name: 'e2e-from-template', spec: { datasetVersion, hyper: { maxSteps: 10, learningRate: 0.003 }, output: { model: outputModel } } });
  }, 120_000);

  it('speaks zh-CN', async () => {
    await page.goto(`${core.url}/training`);
    await page.locator('[data-test=training-page]').waitFor();
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-zh-CN]:visible').click();
    await expect.poll(() => page.locator('[data-test=training-compare]').innerText()).toBe(zh.training.history.compare);
    expect(await field('training-search').getAttribute('placeholder')).toBe(zh.training.history.search);
    expect(await page.locator('[data-test=run-clone-e2e-alpha]').innerText()).toBe(zh.training.history.clone);
    await fullPageScreenshot(page, SHOTS.listZh);
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-en]:visible').click();
    expect(pageErrors).toEqual([]);
  });
});
