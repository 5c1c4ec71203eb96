/**
 * The gateway's pages in Chromium (issue "Serving II", its "done when"): against a real core with
 * the models and serving plugins and the test responder runtime (a small OpenAI-compatible Node
 * server per replica, real processes started by the scheduler: the gateway is what is under test;
 * the CPU runtime with a real model answers the official client in plugins/serving/test/serving.test.ts).
 * A deployment with a 70/30 canary between two revisions. In the browser a person creates an API
 * key (its secret shown once), the official `openai` client calls the model with that key,
 * the person chats in the playground (streamed), compares the two revisions side by side, copies
 * the request as code, watches QPS and latency move on the Monitoring tab as traffic comes, reads
 * the usage report by key, revokes the key (the client is refused), and sees the playground in
 * zh-CN. Screenshots under /tmp (1400×900).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { buildUiIfStale, fullPageScreenshot, launchChromium, openSignedIn } from './browser.js';
import { API, configOnlyModel, registerVersions, waitDeployment } from '../../plugins/serving/test/harness.js';
import servingZh from '../../plugins/serving/web/src/locales/zh-CN.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const SHOTS = {
  secret: '/tmp/aiplat-gateway-key-secret.png',
  keys: '/tmp/aiplat-gateway-keys.png',
  playground: '/tmp/aiplat-gateway-playground.png',
  compare: '/tmp/aiplat-gateway-compare.png',
  code: '/tmp/aiplat-gateway-code.png',
  monitoring: '/tmp/aiplat-gateway-monitoring.png',
  usage: '/tmp/aiplat-gateway-usage.png',
  playgroundZh: '/tmp/aiplat-gateway-playground-zh.png',
};
const VIEWPORT = { width: 1400, height: 900 };

describe('the gateway in Chromium', () => {
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  let work = '';
  let id = '';
  let secret = '';
  const pageErrors: string[] = [];

  beforeAll(async () => {
    buildUiIfStale();
    work = await mkdtemp(path.join(os.tmpdir(), 'aiplat-gateway-e2e-'));
    const model = await configOnlyModel(path.join(work, 'm'), 256);
    core = await startTestCore({
      plugins: [...['models', 'serving'].map((p) => path.join(ROOT, 'plugins', p)), path.join(ROOT, 'plugins', 'serving', 'test', 'fixtures', 'responder-runtime')],
    });
    const version = (await registerVersions(core, 'gw-model', work, [model])).versions[0]!;
    const created = await core.client.post(`${API}/deployments`, { name: 'gw', modelVersion: version, runtime: 'responder', replicas: 1, options: { tag: 'r1' } });
    expect(created.status, created.text).toBe(201);
    id = created.body.id;
    await waitDeployment(core, id, (d) => d.state === 'ready', 60_000);
    const canary = await core.client.post(`${API}/deployments/${id}/revisions`, { options: { tag: 'r2' }, canaryWeight: 30 });
    expect(canary.status, canary.text).toBe(201);
    await waitDeployment(core, id, (d) => d.traffic.length === 2 && d.pending === null, 60_000);
    browser = await launchChromium();
    page = await openSignedIn(browser, core.url, pageErrors, VIEWPORT);
  }, 300_000);
  afterAll(async () => {
    await browser?.close();
    await core?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  }, 120_000);

  const input = (name: string) => page.locator(`input[data-test=${name}], [data-test=${name}] input, textarea[data-test=${name}]`).first();
  const client = () => new OpenAI({ baseURL: `${core.url.replace(/\/$/, '')}/v1`, apiKey: secret, maxRetries: 0 });

  it('creates an API key, shown once, that the official openai client calls the model with', async () => {
    await page.goto(`${core.url}/serving`);
    await page.click('[data-test=nav-keys]');
    await page.locator('[data-test=keys-table]').waitFor();
    await page.click('[data-test=key-create]');
    await input('key-name').fill('ci-key');
    await page.locator('[data-test=key-models]').click();
    await page.locator('[data-test=key-model-gw]:visible').click();
    await page.keyboard.press('Escape');
    await input('key-rpm').fill('1000');
    await page.click('[data-test=key-create-submit]');
    secret = (await page.locator('[data-test=key-secret]').textContent())!.trim();
    expect(secret).toMatch(/^sk-aiplat-/);
    await expect(page.locator('[data-test=key-secret-warning]').isVisible()).resolves.toBe(true);
    await fullPageScreenshot(page, SHOTS.secret);
    await page.click('[data-test=key-secret-done]');
    const row = page.locator('[data-test=key-row-ci-key][data-status=active]');
    await row.waitFor();
    // Never shown again: the list has its prefix only.
    expect(await page.locator('[data-test=keys-table]').textContent()).not.toContain(secret);
    expect(await page.locator('[data-test=key-models-ci-key]').textContent()).toContain('gw');
    await fullPageScreenshot(page, SHOTS.keys);

    const openai = client();
    const whole = await openai.chat.completions.create({ model: 'gw', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8 });
    expect(whole.choices[0]!.message.content).toMatch(/^hello from r[12]$/);
    let streamed = '';
    for await (const chunk of await openai.chat.completions.create({ model: 'gw', messages: [{ role: 'user', content: 'Hello' }], stream: true })) streamed += chunk.choices[0]?.delta?.content ?? '';
    expect(streamed).toBe('tok'.repeat(7));
  });

  it('chats in the playground with streaming, then compares the two revisions side by side and copies the request as code', async () => {
    await page.goto(`${core.url}/serving/deployments/${id}`);
    await page.click('[data-test=playground-link]');
    await page.locator(`[data-test=pane-0][data-deployment="${id}"]`).waitFor();
    await input('playground-input').fill('Hello gateway');
    await page.click('[data-test=playground-send]');
    await page.locator('[data-test=pane-0-meta-1]').waitFor();
    expect(await page.locator('[data-test=pane-0-text-1]').textContent()).toContain('toktok');
    expect(await page.locator('[data-test=pane-0-meta-1]').getAttribute('data-tokens')).toBe('7');
    await fullPageScreenshot(page, SHOTS.playground);

    // Compare: the second pane takes the canary's other revision; one prompt goes to both.
    await page.click('[data-test=playground-compare]');
    await page.locator(`[data-test=pane-1][data-deployment="${id}"]`).waitFor();
    await page.locator('[data-test=pane-0-revision]').click();
    await page.locator('[data-test=pane-0-revision-1]:visible').click();
    await page.locator('[data-test=pane-1-revision]').click();
    await page.locator('[data-test=pane-1-revision-2]:visible').click();
    await page.locator('[data-test=pane-0][data-revision="1"]').waitFor();
    await page.locator('[data-test=pane-1][data-revision="2"]').waitFor();
    await input('playground-input').fill('Compare both');
    await page.click('[data-test=playground-send]');
    await page.locator('[data-test=pane-0-meta-3]').waitFor();
    await page.locator('[data-test=pane-1-meta-1]').waitFor();
    // Each pane was answered by the revision it asked for.
    expect(await page.locator('[data-test=pane-0-meta-3]').getAttribute('data-revision')).toBe('1');
    expect(await page.locator('[data-test=pane-1-meta-1]').getAttribute('data-revision')).toBe('2');
    await fullPageScreenshot(page, SHOTS.compare);

    await page.click('[data-test=copy-code]');
    await page.locator('[data-test=code-dialog]').waitFor();
    await page.click('[data-test=code-tab-python]');
    const python = (await page.locator('[data-test=code-python]').textContent())!;
    expect(python).toContain('from openai import OpenAI');
    expect(python).toContain(`base_url="${core.url.replace(/\/$/, '')}/v1"`);
    expect(python).toContain('AIPLAT_API_KEY');
    expect(python).toContain('"gw"');
    expect(python).toContain('Compare both');
    await fullPageScreenshot(page, SHOTS.code);
    await page.keyboard.press('Escape');
  });

  it('shows QPS and latency move on the Monitoring tab as traffic comes, with the top key', async () => {
    await page.goto(`${core.url}/serving/deployments/${id}?tab=monitoring`);
    const totals = page.locator('[data-test=metrics-totals]');
    await totals.waitFor();
    const before = Number(await totals.getAttribute('data-requests'));
    // Traffic through the key while the page is open (it polls every 5 s).
    const openai = client();
    for (let i = 0; i < 60; i++) await openai.chat.completions.create({ model: 'gw', messages: [{ role: 'user', content: `n${i}` }], max_tokens: 4 });
    // The page's own poll brings them in (no reload).
    await expect.poll(async () => Number(await totals.getAttribute('data-requests')), { timeout: 15_000 }).toBeGreaterThanOrEqual(before + 60);
    expect(Number(await page.locator('[data-test=metrics-qps]').getAttribute('data-qps'))).toBeGreaterThan(0);
    expect(Number(await page.locator('[data-test=metrics-latency]').getAttribute('data-p50'))).toBeGreaterThan(0);
    expect(Number(await page.locator('[data-test=metrics-qps-chart]').getAttribute('data-busy-points'))).toBeGreaterThan(0);
    expect(await page.locator('[data-test=metrics-qps-chart]').getAttribute('data-revisions')).toBe('2');
    expect(Number(await page.locator('[data-test=top-key-ci-key]').getAttribute('data-requests'))).toBeGreaterThanOrEqual(62);
    expect(Number(await page.locator('[data-test=gateway-replicas-table]').getAttribute('data-count'))).toBe(2);
    await fullPageScreenshot(page, SHOTS.monitoring);
  });

  it('reports usage by key, and a revoked key is refused', async () => {
    await page.goto(`${core.url}/serving/usage`);
    await page.locator('[data-test=usage-table]').waitFor();
    await page.click('[data-test=usage-group-key]');
    const row = page.locator('[data-test=usage-row-ci-key]');
    await row.waitFor();
    expect(Number(await row.getAttribute('data-requests'))).toBeGreaterThanOrEqual(62);
    expect(Number(await row.getAttribute('data-total-tokens'))).toBeGreaterThan(0);
    await fullPageScreenshot(page, SHOTS.usage);

    await page.goto(`${core.url}/serving/keys`);
    await page.click('[data-test=key-revoke-ci-key]');
    await page.click('[data-test=confirm]');
    await page.locator('[data-test=key-status-ci-key][data-status=revoked]').waitFor();
    await expect(client().models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('speaks zh-CN, and no page error happened', async () => {
    await page.goto(`${core.url}/serving/playground?deployment=${id}`);
    await page.locator(`[data-test=pane-0][data-deployment="${id}"]`).waitFor();
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-zh-CN]:visible').click();
    await expect.poll(() => page.locator('[data-test=playground-send]').innerText()).toBe(servingZh.playground.send);
    expect(await page.locator('body').innerText()).toContain(servingZh.playground.title);
    await fullPageScreenshot(page, SHOTS.playgroundZh);
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-en]:visible').click();
    expect(pageErrors).toEqual([]);
  });
}, 300_000);
