/**
 * The compute pages in Chromium against a real core with two simulated GPU nodes (a fake
 * nvidia-smi replaying a captured 8× V100S: no GPU here): the GPU pool shows the 16 simulated
 * cards; a job submitted from the workloads page lands on its page, whose log tail shows its
 * output while it runs, whose metric chart gets its points and whose history ends in succeeded; a
 * long job holds its cards in the GPU pool until it is cancelled from its page; a job that can
 * never be placed is refused in the form with the scheduler's reasons; the pages speak zh-CN.
 * Debian's Chromium through playwright-core; the UI is built when stale. Screenshots of the
 * workload page and the GPU pool are saved under /tmp (paths printed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { sdkErrorMessages } from '../../plugin-sdk/web/error-messages.js';
import shellMessages from '../src/locales/shell.js';
import workloadMessages from '../src/locales/workloads.js';
import { buildUiIfStale, fullPageScreenshot, launchChromium, openSignedIn } from './browser.js';

const en = { ...shellMessages.en, ...workloadMessages.en };
const zh = { ...shellMessages['zh-CN'], ...workloadMessages['zh-CN'] };
const SHOTS = { detail: '/tmp/aiplat-workload-detail.png', pool: '/tmp/aiplat-gpu-pool.png', poolHeld: '/tmp/aiplat-gpu-pool-held.png', submit: '/tmp/aiplat-workload-submit.png', refused: '/tmp/aiplat-workload-refused.png', list: '/tmp/aiplat-workloads.png', listZh: '/tmp/aiplat-workloads-zh.png', quotasZh: '/tmp/aiplat-quotas-zh.png' };

/** 8 output lines, each followed by a metric line, 400 ms apart (about 3 s in all). */
const SHORT_JOB = [
  process.execPath,
  '-e',
  "let i = 0; const t = setInterval(() => { i++; console.log('line ' + i + ' of 8'); console.log(JSON.stringify({ type: 'metric', step: i, loss: 2 / i, accuracy: i / 8 })); if (i === 8) clearInterval(t); }, 400);",
];
/** Runs until stopped. */
const LONG_JOB = [process.execPath, '-e', "setInterval(() => console.log('tick ' + Date.now()), 500);"];

describe('compute pages in Chromium', () => {
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  async function submitJob(name: string, command: string[], gpus: number) {
    await page.click('[data-test=nav-workloads]');
    await page.waitForURL(`${core.url}/workloads`);
    await page.click('[data-test=workloads-submit]');
    const dialog = page.locator('[data-test=submit-dialog]');
    await dialog.waitFor();
    await page.fill('[data-test=submit-name]', name);
    await page.fill('[data-test=submit-command]', command.join('\n'));
    await page.fill('[data-test=submit-gpus] input', String(gpus));
    // The argv preview shows each line as one argument: nothing is split by a shell.
    expect(await page.locator('[data-test=submit-argv] li').count()).toBe(command.length);
  }

  /** Wait for the workload page to show a state (the tag's `data-status`). */
  async function waitForState(state: string, timeout = 20_000) {
    await page.locator(`[data-test=workload-state][data-status=${state}]`).waitFor({ timeout });
  }

  const screenshot = (file: string) => fullPageScreenshot(page, file);

  const heldCards = () => page.locator('[data-test=gpu-card][data-free=false]').count();

  beforeAll(async () => {
    buildUiIfStale();
    [core, browser] = await Promise.all([
      startTestCore({ plugins: ['examples'], config: { simulatedGpus: 'v100s-8', simulatedNodes: 2, stopGrace: 1 } }),
      launchChromium(),
    ]);
    page = await openSignedIn(browser, core.url, pageErrors);
  });
  afterAll(async () => {
    await browser?.close();
    await core?.stop();
  });

  it('the GPU pool shows the 16 simulated cards, labelled simulated, all free', async () => {
    await page.click('[data-test=nav-gpus]');
    await page.waitForURL(`${core.url}/gpus`);
    await expect.poll(() => page.locator('[data-test=gpu-card][data-simulated=true]').count()).toBe(16);
    const simulatedNodes = page.locator('[data-test^="gpu-node-"][data-simulated=true]');
    expect(await simulatedNodes.count()).toBe(2);
    expect(await page.locator('[data-test=node-simulated]').allInnerTexts()).toEqual([en.workloads.gpus.simulated, en.workloads.gpus.simulated]);
    expect(await heldCards()).toBe(0);
    expect(await page.locator('[data-test=page-title]').innerText()).toBe(en.nav.gpus);
    expect(await page.locator('[data-test=gpu-card]').first().innerText()).toContain('V100S');
    await screenshot(SHOTS.pool);
  });

  it('submits a job from the workloads page; its page follows the output live, draws its metrics and ends in succeeded', async () => {
    await submitJob('count-to-eight', SHORT_JOB, 2);
    await page.locator('[data-test=submit-no-shell]').waitFor();
    await page.screenshot({ path: SHOTS.submit });
    await page.click('[data-test=submit-confirm]');
    await page.waitForURL(/\/workloads\/[^/]+$/);
    const id = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    expect((await core.client.get<{ name: string; spec: { command: string[]; resources: { gpus: number } } }>(`/api/v1/workloads/${id}`)).body).toMatchObject({
      name: 'count-to-eight',
      spec: { command: SHORT_JOB, resources: { gpus: 2 } },
    });

    // Lines appear while it still runs: the tail follows the stream, not a reload.
    const lines = page.locator('[data-test=log-line]');
    await lines.first().waitFor({ timeout: 20_000 });
    const seenWhileRunning = { lines: await lines.count(), state: await page.locator('[data-test=workload-state]').getAttribute('data-status') };
    expect(seenWhileRunning.state).toBe('running');
    expect(seenWhileRunning.lines).toBeLessThan(16);
    expect(await page.locator('[data-test=log-follow]').getAttribute('data-following')).toBe('true');
    await waitForState('succeeded');
    await expect.poll(() => lines.count()).toBe(16);
    expect(await lines.first().innerText()).toBe('line 1 of 8');
    expect(await lines.nth(14).innerText()).toBe('line 8 of 8');

    // Two curves (loss, accuracy) of 8 points each, drawn by ECharts.
    const metrics = page.locator('[data-test=metrics]');
    await expect.poll(() => metrics.getAttribute('data-points')).toBe('16');
    expect(await metrics.getAttribute('data-series')).toBe('2');
    await page.locator('[data-test=metrics-chart] canvas').first().waitFor();

    // The history: pending → scheduled → running → succeeded.
    const history = page.locator('[data-test=history-item]');
    await expect.poll(async () => history.last().getAttribute('data-to')).toBe('succeeded');
    const transitions = await history.evaluateAll((items) => items.map((i) => i.getAttribute('data-to')));
    expect(transitions).toEqual(['pending', 'scheduled', 'running', 'succeeded']);
    expect(await page.locator('[data-test=placement-device]').count()).toBe(2);
    expect(await page.locator('[data-test=workload-cancel]').count()).toBe(0);
    expect(await page.locator('[data-test=workload-retry]').count()).toBe(1);
    await screenshot(SHOTS.detail);

    // The list has it, succeeded.
    await page.click('[data-test=workload-back]');
    await page.locator('[data-test=workload-state-count-to-eight][data-status=succeeded]').waitFor();
  });

  it('a long job holds its cards in the GPU pool until it is cancelled from its page', async () => {
    await submitJob('runs-until-stopped', LONG_JOB, 2);
    await page.click('[data-test=submit-confirm]');
    await page.waitForURL(/\/workloads\/[^/]+$/);
    const id = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    await waitForState('running');
    const lines = page.locator('[data-test=log-line]');
    await lines.first().waitFor();

    // Pause holds new lines back (and counts them); following again shows them.
    await page.click('[data-test=log-follow]');
    expect(await page.locator('[data-test=log-follow]').getAttribute('data-following')).toBe('false');
    const paused = await lines.count();
    await page.locator('[data-test=log-held]').waitFor();
    expect(await lines.count()).toBe(paused);
    await page.click('[data-test=log-follow]');
    await expect.poll(() => lines.count()).toBeGreaterThan(paused);
    expect(await page.locator('[data-test=log-held]').count()).toBe(0);

    // The pool: its two cards are held, and name it.
    await page.click('[data-test=nav-gpus]');
    await page.waitForURL(`${core.url}/gpus`);
    await expect.poll(heldCards).toBe(2);
    const holders = page.locator(`[data-test=gpu-holder][data-workload="${id}"]`);
    await expect.poll(() => holders.count()).toBe(2);
    await expect.poll(() => holders.first().innerText()).toBe('runs-until-stopped');
    await screenshot(SHOTS.poolHeld);

    // From the holder to the workload, and cancel it there (confirmed).
    await holders.first().click();
    await page.waitForURL(`${core.url}/workloads/${id}`);
    await page.click('[data-test=workload-cancel]');
    await page.locator('[data-test=confirm]:visible').click();
    await waitForState('cancelled');
    const history = page.locator('[data-test=history-item]');
    await expect.poll(() => history.last().getAttribute('data-to')).toBe('cancelled');
    expect(await page.locator('[data-test=workload-reason]').innerText()).toContain('cancelled by admin');

    // The pool follows: every card free again.
    await page.click('[data-test=nav-gpus]');
    await page.waitForURL(`${core.url}/gpus`);
    await page.locator('[data-test=gpu-card]').first().waitFor();
    await expect.poll(heldCards).toBe(0);
    expect(await page.locator('[data-test=gpu-holder]').count()).toBe(0);
  });

  it('a job that can never be placed (9 GPUs on 8-card nodes) is refused in the form with the reason', async () => {
    await submitJob('too-big', [process.execPath, '-e', '1'], 9);
    await page.click('[data-test=submit-confirm]');
    const error = page.locator('[data-test=submit-error]');
    await error.waitFor();
    expect(await error.innerText()).toContain(sdkErrorMessages.en.errors.unschedulable);
    const problems = await page.locator('[data-test=submit-problems] li').allInnerTexts();
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.join(' ')).toMatch(/9/);
    await page.screenshot({ path: SHOTS.refused });
    // Nothing was stored; the form stays open with what was typed.
    expect(await page.locator('[data-test=submit-name]').inputValue()).toBe('too-big');
    const listed = await core.client.get<{ items: { name: string }[] }>('/api/v1/workloads');
    expect(listed.body.items.map((w) => w.name)).not.toContain('too-big');
    await page.keyboard.press('Escape');
    await page.locator('[data-test=submit-dialog]').waitFor({ state: 'hidden' });
    await screenshot(SHOTS.list);
  });

  it('speaks zh-CN', async () => {
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-zh-CN]:visible').click();
    await expect.poll(() => page.locator('[data-test=nav-workloads]').innerText()).toBe(zh.nav.workloads);
    expect(await page.locator('[data-test=nav-gpus]').innerText()).toBe(zh.nav.gpus);
    expect(await page.locator('[data-test=nav-quotas]').innerText()).toBe(zh.nav.quotas);
    expect(await page.locator('[data-test=nav-group-compute]').innerText()).toContain(zh.nav.groups.compute);
    await page.click('[data-test=nav-workloads]');
    await page.waitForURL(`${core.url}/workloads`);
    await expect.poll(() => page.locator('[data-test=page-title]').innerText()).toBe(zh.nav.workloads);
    expect((await page.locator('[data-test=workloads-submit]').innerText()).trim()).toBe(zh.workloads.list.submit);
    expect(await page.locator('[data-test=workload-state-count-to-eight]').innerText()).toBe(zh.workloads.states.succeeded);
    expect(await page.locator('[data-test=workload-state-runs-until-stopped]').innerText()).toBe(zh.workloads.states.cancelled);
    expect(await page.locator('[data-test=workloads-table] thead').innerText()).toContain(zh.workloads.columns.gpus);
    await screenshot(SHOTS.listZh);
    await page.click('[data-test=nav-gpus]');
    await page.waitForURL(`${core.url}/gpus`);
    await expect.poll(() => page.locator('[data-test=node-simulated]').first().innerText()).toBe(zh.workloads.gpus.simulated);
    await page.click('[data-test=nav-quotas]');
    await page.waitForURL(`${core.url}/quotas`);
    await page.locator('[data-test=quota-team-default]').waitFor();
    expect(await page.locator('[data-test=quota-team-default]').innerText()).toContain(zh.workloads.quotas.gpusInUse);
    await screenshot(SHOTS.quotasZh);
    // Back to English for whoever uses this browser profile next.
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-en]:visible').click();
    expect(pageErrors).toEqual([]);
    process.stdout.write(`screenshots: ${Object.values(SHOTS).join(', ')}\n`);
  });
});
