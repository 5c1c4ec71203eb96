/**
 * The environment pages in Chromium against a real core with the Docker executor plugin and the
 * real Docker engine of this machine (scripts/provision-docker.sh): on the Nodes page a Docker host
 * that does not answer is refused in the dialog with the server's reason; the local engine
 * (unix:///var/run/docker.sock) is added with simulated GPUs (t4: there is no GPU here) and shows
 * ready with its card labelled simulated; it is labelled, cordoned and uncordoned; its images are
 * listed (a pull with no registry reachable is refused in the drawer); the GPU pool draws the card's
 * samples (an ECharts canvas); a container job submitted from the form runs on the card, its page
 * following its log and metric curve live; the dashboard's widgets count it, the pool shows the
 * card held and the quota page the team's use; removing the node while it runs is refused with the
 * server's message; cancelled from its page, the card and the quota are free again and the node is
 * removed. The pages speak zh-CN. Screenshots under /tmp.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { sdkErrorMessages } from '../../plugin-sdk/web/error-messages.js';
import shellMessages from '../src/locales/shell.js';
import workloadMessages from '../src/locales/workloads.js';
import nodeMessages from '../src/locales/nodes.js';
import { buildUiIfStale, fullPageScreenshot, launchChromium, openSignedIn } from './browser.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const en = { ...shellMessages.en, ...workloadMessages.en, ...nodeMessages.en };
const zh = { ...shellMessages['zh-CN'], ...workloadMessages['zh-CN'], ...nodeMessages['zh-CN'] };
const SHOTS = {
  nodes: '/tmp/aiplat-nodes.png',
  add: '/tmp/aiplat-nodes-add.png',
  refused: '/tmp/aiplat-nodes-refused.png',
  images: '/tmp/aiplat-nodes-images.png',
  pool: '/tmp/aiplat-gpu-pool-charts.png',
  chart: '/tmp/aiplat-gpu-card-chart.png',
  dashboard: '/tmp/aiplat-dashboard-widgets.png',
  job: '/tmp/aiplat-container-job.png',
  nodesZh: '/tmp/aiplat-nodes-zh.png',
  addZh: '/tmp/aiplat-nodes-add-zh.png',
  poolZh: '/tmp/aiplat-gpu-pool-charts-zh.png',
  dashboardZh: '/tmp/aiplat-dashboard-widgets-zh.png',
};
const NODE = 'docker-e2e';
const IMAGE = 'local/busybox:1';
/** A line of output and a metric point every second, until stopped (busybox sh in the container). */
const CONTAINER_JOB = ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo "tick $i"; echo "{\\"type\\": \\"metric\\", \\"step\\": $i, \\"loss\\": $((100 / i))}"; sleep 1; done'];

describe('environment pages in Chromium', () => {
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  const screenshot = (file: string) => fullPageScreenshot(page, file);

  async function openNodes() {
    await page.click('[data-test=nav-nodes]');
    await page.waitForURL(`${core.url}/nodes`);
    await page.locator('[data-test=nodes-table]').waitFor();
  }

  const row = () => page.locator(`[data-test=node-row-${NODE}]`);
  const nodeState = () => row().locator('[data-test=node-state]').getAttribute('data-status');

  /** Pick an entry of the node's "more" menu. */
  async function more(action: string) {
    await page.click(`[data-test=node-more-${NODE}]`);
    await page.locator(`[data-test=node-${action}-${NODE}]:visible`).click();
  }

  async function openAddDialog() {
    await page.click('[data-test=nodes-add]');
    await page.locator('[data-test=add-node-dialog]').waitFor();
  }

  beforeAll(async () => {
    // The engine and the image the job runs: idempotent, quick when there.
    execFileSync('sh', [path.join(ROOT, 'scripts', 'provision-docker.sh')], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
    buildUiIfStale();
    [core, browser] = await Promise.all([
      startTestCore({ plugins: ['plugins/executor-docker', 'examples'], config: { nodeId: 'e2e-core', gpuSampleSeconds: 1, stopGrace: 1 } }),
      launchChromium(),
    ]);
    page = await openSignedIn(browser, core.url, pageErrors);
  }, 600_000);
  afterAll(async () => {
    await browser?.close();
    await core?.stop();
  });

  it('a Docker host that does not answer is refused in the dialog with the reason', async () => {
    await openNodes();
    expect(await page.locator('[data-test=page-title]').innerText()).toBe(en.nav.nodes);
    await openAddDialog();
    await page.fill('[data-test=add-node-name]', 'nobody-home');
    await page.fill('[data-test=add-node-url]', 'tcp://127.0.0.1:1');
    await page.click('[data-test=add-node-confirm]');
    const error = page.locator('[data-test=add-node-error]');
    await error.waitFor({ timeout: 20_000 });
    expect(await error.innerText()).toContain(sdkErrorMessages.en.errors.node_unreachable);
    expect(await page.locator('[data-test=add-node-error-detail]').innerText()).toMatch(/tcp:\/\/127\.0\.0\.1:1/);
    await page.screenshot({ path: SHOTS.refused });
    // Nothing was stored; the dialog keeps what was typed.
    expect(await page.locator('[data-test=add-node-name]').inputValue()).toBe('nobody-home');
    const nodes = await core.client.get<{ items: { id: string }[] }>('/api/v1/nodes');
    expect(nodes.body.items.map((n) => n.id)).not.toContain('nobody-home');
    await page.keyboard.press('Escape');
    await page.locator('[data-test=add-node-dialog]').waitFor({ state: 'hidden' });
  });

  it('adds the local engine with a simulated T4: ready, its card labelled simulated', async () => {
    await openAddDialog();
    await page.fill('[data-test=add-node-name]', NODE);
    await page.fill('[data-test=add-node-url]', 'unix:///var/run/docker.sock');
    await page.click('[data-test=add-node-simulated]');
    await page.locator('[data-test=add-node-simulated-t4]:visible').click();
    // The choice is explained as simulated before anything is sent.
    await page.locator('[data-test=add-node-simulated-note]').waitFor();
    expect(await page.locator('[data-test=add-node-simulated-note]').innerText()).toContain(en.nodes.add.simulatedTitle);
    await page.screenshot({ path: SHOTS.add });
    await page.click('[data-test=add-node-confirm]');
    await page.locator('[data-test=add-node-dialog]').waitFor({ state: 'hidden', timeout: 20_000 });

    await row().waitFor();
    await expect.poll(nodeState).toBe('ready');
    expect(await row().locator('[data-test=node-title]').innerText()).toBe(NODE);
    expect(await row().locator('[data-test=node-simulated]').innerText()).toBe(en.workloads.gpus.simulated);
    expect(await row().locator('[data-test=node-kind]').getAttribute('data-kind')).toBe('docker');
    expect(await row().locator('[data-test=node-url]').innerText()).toBe('unix:///var/run/docker.sock');
    const gpus = row().locator('[data-test=node-gpus]');
    expect(await gpus.getAttribute('data-total')).toBe('1');
    expect(await gpus.getAttribute('data-free')).toBe('1');
    expect(await row().innerText()).toContain('T4');
  });

  it('labels it, cordons and uncordons it', async () => {
    await page.click(`[data-test=node-edit-${NODE}]`);
    await page.locator('[data-test=edit-node-dialog]').waitFor();
    await page.click('[data-test=edit-node-labels-add]');
    await page.fill('[data-test=edit-node-labels-name-0]', 'pool');
    await page.fill('[data-test=edit-node-labels-value-0]', 'e2e');
    await page.click('[data-test=edit-node-save]');
    await page.locator('[data-test=edit-node-dialog]').waitFor({ state: 'hidden' });
    await expect.poll(() => row().locator('[data-test=node-labels] [data-own=true]').allInnerTexts()).toEqual(['pool=e2e']);
    expect((await core.client.get<{ items: { id: string; userLabels: Record<string, string> }[] }>('/api/v1/nodes')).body.items.find((n) => n.id === NODE)?.userLabels).toEqual({ pool: 'e2e' });

    await more('cordon');
    await expect.poll(nodeState).toBe('cordoned');
    expect(await row().locator('[data-test=node-state]').innerText()).toBe(en.workloads.gpus.nodeStates.cordoned);
    await more('uncordon');
    await expect.poll(nodeState).toBe('ready');
    await screenshot(SHOTS.nodes);
  });

  it("lists the node's images; a pull with no registry reachable is refused in the drawer; a tarball is imported, then deleted", async () => {
    await page.click(`[data-test=node-images-${NODE}]`);
    const drawer = page.locator('[data-test=images-drawer]');
    await drawer.waitFor();
    await expect.poll(() => drawer.locator('[data-test=image-tag]').allInnerTexts(), { timeout: 15_000 }).toContain(IMAGE);
    await page.fill('[data-test=images-reference]', 'registry.invalid/nothing:1');
    await page.click('[data-test=images-pull]');
    const error = page.locator('[data-test=images-pull-error]');
    await error.waitFor({ timeout: 30_000 });
    expect((await error.innerText()).length).toBeGreaterThan(0);

    // A root filesystem tarball (one file), uploaded with the name to give it.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-e2e-rootfs-'));
    try {
      writeFileSync(path.join(dir, 'hello.txt'), 'hello from the e2e test\n');
      const tarball = path.join(dir, 'rootfs.tar');
      execFileSync('tar', ['-cf', tarball, '-C', dir, 'hello.txt']);
      await page.setInputFiles('[data-test=images-file]', tarball);
      await page.fill('[data-test=images-import-reference]', 'local/e2e-import:1');
      await page.click('[data-test=images-upload]');
      await expect.poll(() => drawer.locator('[data-test=image-tag]').allInnerTexts(), { timeout: 30_000 }).toContain('local/e2e-import:1');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(await page.locator('[data-test=images-import-error]').count()).toBe(0);
    await page.screenshot({ path: SHOTS.images });
    const imported = drawer.locator('[data-test=images-table] tbody tr', { hasText: 'local/e2e-import:1' });
    await imported.locator('[data-test=image-delete]').click();
    await page.locator('.el-popconfirm:visible').getByRole('button', { name: en.nodes.images.delete }).click();
    await expect.poll(() => drawer.locator('[data-test=image-tag]').allInnerTexts(), { timeout: 15_000 }).not.toContain('local/e2e-import:1');
    expect(await drawer.locator('[data-test=image-tag]').allInnerTexts()).toContain(IMAGE);
    await page.keyboard.press('Escape');
    await drawer.waitFor({ state: 'hidden' });
  });

  it("the GPU pool shows the simulated card and draws its samples", async () => {
    await page.click('[data-test=nav-gpus]');
    await page.waitForURL(`${core.url}/gpus`);
    const card = page.locator(`[data-test=gpu-card][data-node=${NODE}]`);
    await card.waitFor();
    expect(await card.getAttribute('data-simulated')).toBe('true');
    expect(await page.locator(`[data-test=gpu-node-${NODE}] [data-test=node-simulated]`).innerText()).toBe(en.workloads.gpus.simulated);
    // Samples come every second here; the charts ask again every 30 s, the range buttons at once.
    await page.click('[data-test=gpu-range-15m]');
    await expect.poll(async () => Number(await card.locator('[data-test=gpu-chart]').getAttribute('data-points')), { timeout: 20_000, interval: 1000 }).toBeGreaterThan(0);
    await card.locator('[data-test=gpu-chart-canvas] canvas').first().waitFor();
    await screenshot(SHOTS.pool);
    // The card's larger chart.
    await card.locator('[data-test=gpu-chart-open]').click();
    const dialog = page.locator('[data-test=gpu-chart-dialog]');
    await dialog.locator('[data-test=gpu-chart-canvas] canvas').first().waitFor();
    await page.screenshot({ path: SHOTS.chart });
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
  });

  it('a container job from the form: its log and curve follow live; the dashboard, the pool and the quota count it; the node cannot be removed until it is cancelled', async () => {
    // A quota for the default team, to see its use move.
    expect((await core.client.put('/api/v1/teams/default/quota', { gpus: 2, gpuHours: null })).status).toBeLessThan(300);

    await page.click('[data-test=nav-workloads]');
    await page.waitForURL(`${core.url}/workloads`);
    await page.click('[data-test=workloads-submit]');
    await page.locator('[data-test=submit-dialog]').waitFor();
    await page.fill('[data-test=submit-name]', 'container-ticks');
    await page.fill('[data-test=submit-command]', CONTAINER_JOB.join('\n'));
    await page.click('[data-test=submit-executor]');
    await page.locator('[data-test=submit-executor-docker]:visible').click();
    await page.fill('[data-test=submit-image]', IMAGE);
    await page.fill('[data-test=submit-gpus] input', '1');
    await page.click('[data-test=submit-confirm]');
    await page.waitForURL(/\/workloads\/[^/]+$/, { timeout: 20_000 });
    const id = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);

    // Its page: running on the node's card, in the image, with output and metric points arriving live.
    await page.locator('[data-test=workload-state][data-status=running]').waitFor({ timeout: 30_000 });
    expect(await page.locator('[data-test=placement-node]').innerText()).toBe(NODE);
    expect(await page.locator('[data-test=placement-device]').count()).toBe(1);
    await page.locator('[data-test=placement-image]').waitFor();
    const lines = page.locator('[data-test=log-line]');
    await expect.poll(() => lines.count(), { timeout: 20_000 }).toBeGreaterThan(2);
    const metrics = page.locator('[data-test=metrics]');
    await expect.poll(async () => Number(await metrics.getAttribute('data-points')), { timeout: 20_000 }).toBeGreaterThan(2);
    await page.locator('[data-test=metrics-chart] canvas').first().waitFor();
    const seen = await lines.count();
    await expect.poll(() => lines.count(), { timeout: 10_000 }).toBeGreaterThan(seen);
    await screenshot(SHOTS.job);

    await page.click('[data-test=nav-dashboard]');
    await page.waitForURL(`${core.url}/`);
    const running = page.locator('[data-test=workloads-widget-running]');
    await expect.poll(() => running.getAttribute('data-count'), { timeout: 30_000 }).toBe('1');
    expect(await page.locator('[data-test=workloads-widget-queued]').getAttribute('data-count')).toBe('0');
    // GPU use: the pool's figures and curve.
    await page.locator('[data-test=gpu-use-widget]').waitFor({ timeout: 20_000 });
    expect(await page.locator('[data-test=gpu-use-utilization]').innerText()).toMatch(/\d+ %/);
    expect(await page.locator('[data-test=gpu-use-memory]').innerText()).toMatch(/\d/);
    await page.locator('[data-test=gpu-use-chart] canvas').first().waitFor();
    await screenshot(SHOTS.dashboard);
    // The count is a link to the list, filtered.
    await running.click();
    await page.waitForURL(/\/workloads\?state=running(%2C|,)ready/);
    await page.locator('[data-test=workload-state-container-ticks]').waitFor();

    // The ledger: the card held by it; the quota: one of two in use.
    await page.click('[data-test=nav-gpus]');
    await page.waitForURL(`${core.url}/gpus`);
    await expect.poll(() => page.locator(`[data-test=gpu-card][data-node=${NODE}]`).getAttribute('data-free')).toBe('false');
    await expect.poll(() => page.locator(`[data-test=gpu-holder][data-workload="${id}"]`).count()).toBe(1);
    await page.click('[data-test=nav-quotas]');
    await page.waitForURL(`${core.url}/quotas`);
    const quota = page.locator('[data-test=quota-team-default] [data-test=quota-gpus]');
    await expect.poll(() => quota.innerText()).toContain(en.workloads.quotas.ofLimit.replace('{used}', '1').replace('{limit}', '2'));

    // Removing a node that runs work is refused: the server's message in the dialog.
    await openNodes();
    await more('remove');
    await page.click('[data-test=node-confirm]');
    const refusal = page.locator('[data-test=node-confirm-error]');
    await refusal.waitFor();
    expect(await refusal.innerText()).toMatch(/replica/);
    await page.keyboard.press('Escape');
    await page.locator('[data-test=node-confirm-dialog]').waitFor({ state: 'hidden' });

    // Cancelled from its page: the card and the quota are free again, the dashboard counts nothing.
    await page.goto(`${core.url}/workloads/${encodeURIComponent(id)}`);
    await page.click('[data-test=workload-cancel]');
    await page.locator('[data-test=confirm]:visible').click();
    await page.locator('[data-test=workload-state][data-status=cancelled]').waitFor({ timeout: 30_000 });
    await page.click('[data-test=nav-quotas]');
    await page.waitForURL(`${core.url}/quotas`);
    await expect.poll(() => quota.innerText(), { timeout: 15_000 }).toContain(en.workloads.quotas.ofLimit.replace('{used}', '0').replace('{limit}', '2'));
    await page.click('[data-test=nav-gpus]');
    await expect.poll(() => page.locator(`[data-test=gpu-card][data-node=${NODE}]`).getAttribute('data-free'), { timeout: 15_000 }).toBe('true');
    await page.click('[data-test=nav-dashboard]');
    await expect.poll(() => page.locator('[data-test=workloads-widget-running]').getAttribute('data-count'), { timeout: 15_000 }).toBe('0');
  });

  it('speaks zh-CN', async () => {
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-zh-CN]:visible').click();
    await expect.poll(() => page.locator('[data-test=nav-nodes]').innerText()).toBe(zh.nav.nodes);
    expect(await page.locator('[data-test=widget-workloads]').innerText()).toContain(zh.dashboard.workloads.running);
    expect(await page.locator('[data-test=widget-gpu-use]').innerText()).toContain(zh.dashboard.gpuUse.utilization);
    await screenshot(SHOTS.dashboardZh);
    await openNodes();
    await expect.poll(() => page.locator('[data-test=page-title]').innerText()).toBe(zh.nav.nodes);
    expect(await row().locator('[data-test=node-simulated]').innerText()).toBe(zh.workloads.gpus.simulated);
    expect(await row().locator('[data-test=node-state]').innerText()).toBe(zh.workloads.gpus.nodeStates.ready);
    expect(await page.locator('[data-test=nodes-table] thead').innerText()).toContain(zh.nodes.columns.labels);
    await screenshot(SHOTS.nodesZh);
    await openAddDialog();
    await page.click('[data-test=add-node-simulated]');
    await page.locator('[data-test=add-node-simulated-a5000-2]:visible').click();
    await page.locator('[data-test=add-node-simulated-note]').waitFor();
    expect(await page.locator('[data-test=add-node-dialog]').innerText()).toContain(zh.nodes.add.simulatedTitle);
    await page.screenshot({ path: SHOTS.addZh });
    await page.click('[data-test=add-node-cancel]');
    await page.locator('[data-test=add-node-dialog]').waitFor({ state: 'hidden' });
    await page.click('[data-test=nav-gpus]');
    await page.waitForURL(`${core.url}/gpus`);
    await page.locator(`[data-test=gpu-card][data-node=${NODE}] [data-test=gpu-chart-canvas] canvas`).first().waitFor();
    expect(await page.locator('[data-test=gpu-range]').innerText()).toContain(zh.workloads.gpus.chart.ranges['15m']);
    await screenshot(SHOTS.poolZh);
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-en]:visible').click();
  });

  it('removes the idle node', async () => {
    await openNodes();
    await more('remove');
    await page.click('[data-test=node-confirm]');
    await page.locator('[data-test=node-confirm-dialog]').waitFor({ state: 'hidden' });
    await expect.poll(() => row().count()).toBe(0);
    const nodes = await core.client.get<{ items: { id: string }[] }>('/api/v1/nodes');
    expect(nodes.body.items.map((n) => n.id)).not.toContain(NODE);
    expect(pageErrors).toEqual([]);
    process.stdout.write(`screenshots: ${Object.values(SHOTS).join(', ')}\n`);
  });
});
