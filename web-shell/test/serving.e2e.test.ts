/**
 * The serving pages in Chromium against a real core with the models, lineage, serving and
 * serving-cpu plugins, and the CPU runtime's venv (plugins/serving-cpu/setup.sh): two tiny chat
 * models (seeds 1 and 2) imported as versions of one model through the API. In the browser: the
 * deploy wizard (model → version → the `cpu` runtime card → resources → options → review with the
 * GPU-memory estimate → Deploy); the deployment's page shows it ready with its replica in
 * rotation, the API docs tab its base URL, model name and snippets; the deployed model answers
 * through /v1; the Change dialog makes revision 2 with another seed, which takes the traffic;
 * Rollback to revision 1 makes revision 3 with revision 1's options, in traffic; the list page
 * speaks zh-CN. Screenshots under /tmp (1400×900).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { buildUiIfStale, fullPageScreenshot, launchChromium, openSignedIn } from './browser.js';
import { API, chat, cpuRuntimePython, registerVersions, servesOnly, tinyModel, waitDeployment } from '../../plugins/serving/test/harness.js';
import shellMessages from '../src/locales/shell.js';
import servingEn from '../../plugins/serving/web/src/locales/en.js';
import servingZh from '../../plugins/serving/web/src/locales/zh-CN.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const SHOTS = {
  listEmpty: '/tmp/aiplat-serving-list-empty.png',
  model: '/tmp/aiplat-serving-wizard-model.png',
  runtime: '/tmp/aiplat-serving-wizard-runtime.png',
  resources: '/tmp/aiplat-serving-wizard-resources.png',
  options: '/tmp/aiplat-serving-wizard-options.png',
  review: '/tmp/aiplat-serving-wizard-review.png',
  deploying: '/tmp/aiplat-serving-deployment-deploying.png',
  overview: '/tmp/aiplat-serving-deployment-overview.png',
  docs: '/tmp/aiplat-serving-deployment-docs.png',
  change: '/tmp/aiplat-serving-change.png',
  revisions: '/tmp/aiplat-serving-deployment-revisions.png',
  rolledBack: '/tmp/aiplat-serving-deployment-rolled-back.png',
  logs: '/tmp/aiplat-serving-deployment-logs.png',
  traffic: '/tmp/aiplat-serving-deployment-traffic.png',
  list: '/tmp/aiplat-serving-list.png',
  listZh: '/tmp/aiplat-serving-list-zh.png',
  wizardZh: '/tmp/aiplat-serving-wizard-zh.png',
  detailZh: '/tmp/aiplat-serving-deployment-zh.png',
};
const en = servingEn;
const zh = { ...shellMessages['zh-CN'], serving: servingZh };
const VIEWPORT = { width: 1400, height: 900 };

describe('serving in Chromium', () => {
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  let work = '';
  let v1 = '';
  let v2 = '';
  let id = '';
  const pageErrors: string[] = [];

  beforeAll(async () => {
    buildUiIfStale();
    const python = await cpuRuntimePython();
    work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-serving-e2e-'));
    const m1 = await tinyModel(python, path.join(work, 'seed-1'), 1);
    const m2 = await tinyModel(python, path.join(work, 'seed-2'), 2);
    core = await startTestCore({ plugins: ['models', 'lineage', 'serving', 'serving-cpu'].map((p) => path.join(ROOT, 'plugins', p)) });
    [v1, v2] = (await registerVersions(core, 'tiny-chat', work, [m1, m2])).versions as [string, string];
    browser = await launchChromium();
    page = await openSignedIn(browser, core.url, pageErrors, VIEWPORT);
  }, 900_000);
  afterAll(async () => {
    await browser?.close();
    await core?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  }, 120_000);

  /** The input of an Element Plus field, whichever element its data-test landed on. */
  const field = (name: string, scope = 'body') => page.locator(`${scope} input[data-test=${name}], ${scope} [data-test=${name}] input`).first();
  const pick = async (select: string, option: string) => {
    await page.locator(`[data-test=${select}]`).click();
    await page.locator(`[data-test=${option}]:visible`).click();
  };
  const detail = async () => (await core.client.get(`${API}/deployments/${id}`)).body as { state: string; traffic: { revision: number; weight: number }[]; revisions: { number: number; state: string; options: Record<string, unknown>; modelVersion: string; rollbackOf: number | null }[] };
  const step = () => page.locator('[data-test=wizard-steps]').getAttribute('data-step');
  const settle = () => page.waitForTimeout(350);

  it('deploys a model version on the CPU runtime through the wizard', async () => {
    await page.click('[data-test=nav-serving-nav]');
    await page.waitForURL(`${core.url}/serving`);
    await page.locator('[data-test=deployments-page]').waitFor();
    await page.locator('[data-test=deployments-empty]').waitFor();
    await settle();
    await page.screenshot({ path: SHOTS.listEmpty });

    await page.click('[data-test=deploy-button]');
    const wizard = page.locator('[data-test=deploy-wizard]');
    await wizard.waitFor();
    // 1. the model and its version (v2 is offered first: newest first); v1 is picked.
    await page.click('[data-test=wizard-next]');
    await page.locator('[data-test=wizard-invalid]').waitFor();
    await expect.poll(() => wizard.innerText()).toContain(en.wizard.errors.required);
    await pick('wizard-model', 'wizard-model-option-tiny-chat');
    await expect.poll(() => page.locator('[data-test=wizard-version-facts]').getAttribute('data-version')).toBe('2');
    await pick('wizard-version', 'wizard-version-option-1');
    await expect.poll(() => page.locator('[data-test=wizard-version-facts]').getAttribute('data-version')).toBe('1');
    expect(Number(await page.locator('[data-test=wizard-version-parameters]').getAttribute('data-value'))).toBeGreaterThan(0);
    await settle();
    await page.screenshot({ path: SHOTS.model });
    await page.click('[data-test=wizard-next]');

    // 2. the runtime: the CPU card.
    await expect.poll(step).toBe('runtime');
    const card = page.locator('[data-test=runtime-card-cpu]');
    await card.waitFor();
    expect(await card.getAttribute('data-available')).toBe('true');
    await card.click();
    expect(await card.getAttribute('data-selected')).toBe('true');
    await settle();
    await page.screenshot({ path: SHOTS.runtime });
    await page.click('[data-test=wizard-next]');

    // 3. resources: a CPU runtime gets no GPU; one replica.
    await expect.poll(step).toBe('resources');
    await page.locator('[data-test=resources-form]').waitFor();
    expect(await page.locator('[data-test=resources-gpu-none] input').isChecked()).toBe(true);
    expect(await page.locator('[data-test=resources-gpu-whole] input').isDisabled()).toBe(true);
    expect(await field('resources-replicas').inputValue()).toBe('1');
    await settle();
    await page.screenshot({ path: SHOTS.resources });
    await page.click('[data-test=wizard-next]');

    // 4. options: the name (from the model until typed), the served model name, the runtime's options.
    await expect.poll(step).toBe('options');
    expect(await field('wizard-name').inputValue()).toBe('tiny-chat-v1');
    expect(await field('wizard-name').getAttribute('maxlength')).toBe('63');
    await field('wizard-name').fill('-chat');
    await page.click('[data-test=wizard-next]');
    await page.locator('[data-test=wizard-invalid]').waitFor();
    await expect.poll(() => wizard.innerText()).toContain(en.wizard.errors.name.replace('{max}', '63'));
    await field('wizard-name').fill('chat-ui');
    await field('wizard-served-model-name').fill('tiny chat');
    await expect.poll(() => wizard.innerText()).toContain(en.wizard.errors.servedModelName.replace('{max}', '128'));
    await field('wizard-served-model-name').fill('tiny-chat-ui');
    await page.locator('[data-test=option-item-dtype]').waitFor();
    await field('option-threads').fill('1');
    await field('option-threads').press('Tab');
    await settle();
    await page.screenshot({ path: SHOTS.options });
    await page.click('[data-test=wizard-next]');

    // 5. review: the request as it is sent, the GPU-memory estimate.
    await expect.poll(step).toBe('review');
    const request = JSON.parse(await page.locator('[data-test=wizard-request]').innerText()) as Record<string, unknown>;
    expect(request).toEqual({
      name: 'chat-ui',
      servedModelName: 'tiny-chat-ui',
      modelVersion: v1,
      runtime: 'cpu',
      executor: 'local',
      resources: { gpus: 0 },
      replicas: 1,
      options: { dtype: 'auto', seed: 0, threads: 1 },
    });
    expect(await page.locator('[data-test=review-model]').innerText()).toBe('tiny-chat v1');
    const estimate = page.locator('[data-test=estimate]');
    await expect.poll(() => estimate.getAttribute('data-fits')).toBe('true');
    // The CPU runtime needs no GPU memory; the weights (a few hundred kB) round up to 1 MiB.
    expect(await estimate.getAttribute('data-per-replica-mib')).toBe('0');
    expect(await page.locator('[data-test=estimate-weights]').innerText()).toBe('1 MiB');
    expect(await page.locator('[data-test=estimate-verdict]').innerText()).toContain('CPU only');
    await settle();
    await fullPageScreenshot(page, SHOTS.review);

    await page.click('[data-test=wizard-deploy]');
    await page.waitForURL(/\/serving\/deployments\/[^/?]+/, { timeout: 30_000 });
    id = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    await page.locator('[data-test=deployment-header]').waitFor();
    expect(await page.locator('[data-test=served-model-name]').innerText()).toBe('tiny-chat-ui');
    expect(await page.locator('[data-test=deployment-model]').innerText()).toBe('tiny-chat v1');
    await page.screenshot({ path: SHOTS.deploying });
  }, 120_000);

  it('shows it ready with its replica in rotation, its API docs; it answers through /v1', async () => {
    expect(id, 'the wizard deployed nothing').not.toBe('');
    const state = page.locator('[data-test=deployment-state]');
    await expect.poll(() => state.getAttribute('data-state'), { timeout: 150_000, interval: 500 }).toBe('ready');
    const replica = page.locator('[data-test=replica-1-0]');
    await expect.poll(() => replica.getAttribute('data-in-rotation'), { timeout: 10_000 }).toBe('true');
    expect(await replica.getAttribute('data-state')).toBe('ready');
    expect(await page.locator('[data-test=traffic-bar]:visible').getAttribute('data-split')).toBe('1:100');
    expect(await page.locator('[data-test=live-revision]').getAttribute('data-revision')).toBe('1');
    await page.locator('[data-test=deployment-settling]').waitFor({ state: 'detached' });
    await fullPageScreenshot(page, SHOTS.overview);

    await page.click('[data-test=api-docs-tab]');
    await page.locator('[data-test=api-docs-base-url]').waitFor();
    const baseUrl = `${core.url.replace(/\/$/, '')}/v1`;
    expect(await page.locator('[data-test=api-docs-base-url]').innerText()).toBe(baseUrl);
    expect(await page.locator('[data-test=api-docs-model]').innerText()).toBe('tiny-chat-ui');
    for (const s of ['curl', 'python', 'javascript']) {
      await page.click(`[data-test=snippet-tab-${s}]`);
      const code = await page.locator(`[data-test=snippet-${s}]`).innerText();
      expect(code).toContain('tiny-chat-ui');
      expect(code).toContain(baseUrl);
    }
    await page.click('[data-test=snippet-tab-curl]');
    await settle();
    await fullPageScreenshot(page, SHOTS.docs);

    const answer = await chat(core, 'tiny-chat-ui');
    expect(answer.status, answer.text).toBe(200);
    expect(answer.headers.get('x-aiplat-revision')).toBe('1');
    expect(answer.body).toMatchObject({ object: 'chat.completion', model: 'tiny-chat-ui' });
    expect(typeof answer.body.choices[0].message.content).toBe('string');
  }, 180_000);

  it('changes an option: revision 2 takes the traffic once ready', async () => {
    expect(id, 'the wizard deployed nothing').not.toBe('');
    await page.click('[data-test=change-button]');
    const dialog = page.locator('[data-test=change-dialog]');
    await dialog.waitFor();
    expect(await page.locator('[data-test=change-base]').getAttribute('data-revision')).toBe('1');
    await expect.poll(() => page.locator('[data-test=change-summary]').getAttribute('data-changes')).toBe('');
    const seed = field('option-seed', '[data-test=change-dialog]');
    await seed.waitFor();
    expect(await seed.inputValue()).toBe('0');
    await seed.fill('7');
    await seed.press('Tab');
    await expect.poll(() => page.locator('[data-test=change-summary]').getAttribute('data-changes')).toBe('options');
    await settle();
    await page.screenshot({ path: SHOTS.change });
    await page.click('[data-test=change-submit]');
    await dialog.waitFor({ state: 'hidden' });

    const row = page.locator('[data-test=revision-row-2]');
    await row.waitFor();
    await expect.poll(() => row.getAttribute('data-in-traffic'), { timeout: 150_000, interval: 500 }).toBe('true');
    await expect.poll(() => page.locator('[data-test=revision-state-1]').getAttribute('data-state'), { timeout: 20_000 }).toBe('retired');
    expect(await page.locator('[data-test=revision-row-1]').getAttribute('data-in-traffic')).toBe('false');
    expect(await page.locator('[data-test=revision-change-2]').innerText()).toContain('options.seed: 0 → 7');
    const d = await waitDeployment(core, id, servesOnly(2), 20_000);
    expect(d.revisions.find((r: { number: number }) => r.number === 2).options).toEqual({ dtype: 'auto', seed: 7, threads: 1 });
    await fullPageScreenshot(page, SHOTS.revisions);
  }, 180_000);

  it('rolls back to revision 1: revision 3 with its options takes the traffic', async () => {
    expect(id, 'the wizard deployed nothing').not.toBe('');
    expect(await page.locator('[data-test=rollback-2]').count()).toBe(0);
    await page.click('[data-test=rollback-1]');
    await page.locator('.el-dialog [data-test=confirm]:visible').click();
    const row = page.locator('[data-test=revision-row-3]');
    await row.waitFor();
    await expect.poll(() => row.getAttribute('data-in-traffic'), { timeout: 150_000, interval: 500 }).toBe('true');
    await expect.poll(() => page.locator('[data-test=revision-state-3]').getAttribute('data-state'), { timeout: 20_000 }).toBe('ready');
    expect(await page.locator('[data-test=revision-change-3]').innerText()).toBe('rollback to revision 1');
    const d = await detail();
    const r1 = d.revisions.find((r) => r.number === 1)!;
    const r3 = d.revisions.find((r) => r.number === 3)!;
    expect(r3).toMatchObject({ rollbackOf: 1, modelVersion: v1 });
    expect(r3.options).toEqual(r1.options);
    expect(d.traffic).toEqual([{ revision: 3, weight: 100 }]);
    await page.locator('[data-test=deployment-settling]').waitFor({ state: 'detached', timeout: 20_000 });
    await fullPageScreenshot(page, SHOTS.rolledBack);
    expect((await chat(core, 'tiny-chat-ui')).headers.get('x-aiplat-revision')).toBe('3');

    // The other tabs render.
    // The logs follow the live revision, every replica.
    await page.click('[data-test=logs-tab]');
    await expect.poll(() => page.locator('[data-test=logs-revision]').innerText()).toContain('r3');
    expect(await page.locator('[data-test=logs-replica]').innerText()).toContain(en.logs.allReplicas);
    await expect.poll(async () => Number(await page.locator('[data-test=logs-view]').getAttribute('data-lines')), { timeout: 15_000 }).toBeGreaterThan(0);
    await fullPageScreenshot(page, SHOTS.logs);
    await page.click('[data-test=traffic-tab]');
    await page.locator('[data-test=traffic-single]').waitFor();
    await fullPageScreenshot(page, SHOTS.traffic);
    expect(v2).not.toBe(v1);
  }, 180_000);

  it('lists the deployment, and speaks zh-CN', async () => {
    expect(id, 'the wizard deployed nothing').not.toBe('');
    await page.click('[data-test=deployment-back]');
    await page.waitForURL(`${core.url}/serving`);
    const state = page.locator('[data-test=deployment-state-chat-ui]');
    await state.waitFor();
    expect(await state.getAttribute('data-state')).toBe('ready');
    expect(await page.locator('[data-test=deployment-traffic-chat-ui]').innerText()).toBe('r3 100%');
    expect(await page.locator('[data-test=deployment-latest-chat-ui]').innerText()).toBe('r3');
    expect(await page.locator('[data-test=deployment-served-chat-ui]').innerText()).toBe('tiny-chat-ui');
    await settle();
    await page.screenshot({ path: SHOTS.list });

    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-zh-CN]:visible').click();
    await expect.poll(() => page.locator('[data-test=deploy-button]').innerText()).toBe(zh.serving.list.deploy);
    const list = page.locator('[data-test=deployments-page]');
    expect(await list.innerText()).toContain(zh.serving.title);
    expect(await list.innerText()).toContain(zh.serving.list.servedModelName);
    expect(await state.innerText()).toBe(zh.serving.state.ready);
    await settle();
    await page.screenshot({ path: SHOTS.listZh });

    await page.click('[data-test=deploy-button]');
    const wizard = page.locator('[data-test=deploy-wizard]');
    await wizard.waitFor();
    expect(await wizard.locator('.el-dialog__title').innerText()).toBe(zh.serving.wizard.title);
    expect(await wizard.innerText()).toContain(zh.serving.wizard.steps.runtime);
    await settle();
    await page.screenshot({ path: SHOTS.wizardZh });
    await page.keyboard.press('Escape');
    await wizard.waitFor({ state: 'hidden' });

    await page.click('[data-test=deployment-link-chat-ui]');
    await page.locator('[data-test=deployment-header]').waitFor();
    expect(await page.locator('[data-test=deployment-state]').innerText()).toBe(zh.serving.state.ready);
    await settle();
    await fullPageScreenshot(page, SHOTS.detailZh);

    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-en]:visible').click();
    expect(pageErrors).toEqual([]);
  }, 60_000);
});
