/**
 * The lineage page in Chromium against a real core with the lineage plugin: a chain dataset
 * version → run → model version → variant → deployment revision recorded through the API, then
 * `/lineage?kind=serving.revision&id=rev-1` shows every node of it (the ECharts canvas and the node
 * list under it); clicking a node without a page shows its details, and "Show its lineage" moves
 * the page to that node. Screenshots under /tmp.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { buildUiIfStale, fullPageScreenshot, launchChromium, openSignedIn } from './browser.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const SHOTS = { graph: '/tmp/aiplat-lineage-graph.png', details: '/tmp/aiplat-lineage-details.png' };
const CHAIN = [
  { kind: 'datasets.version', id: 'dv-1', label: 'chat-sft v1' },
  { kind: 'training.run', id: 'run-1', label: 'sft run 1' },
  { kind: 'models.version', id: 'mv-1', label: 'llama-sft v1' },
  { kind: 'models.variant', id: 'var-1', label: 'llama-sft v1 int4' },
  { kind: 'serving.revision', id: 'rev-1', label: 'chat rev 1' },
];
const RELATIONS = ['trained-from', 'produced-by', 'optimised-from', 'deployed-from'];

describe('lineage in Chromium', () => {
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    buildUiIfStale();
    core = await startTestCore({ plugins: [path.join(ROOT, 'plugins', 'lineage')] });
    for (const [i, relation] of RELATIONS.entries()) {
      const res = await core.client.post('/api/plugins/lineage/edges', { from: CHAIN[i], to: CHAIN[i + 1], relation });
      expect(res.status).toBe(204);
    }
    browser = await launchChromium();
    page = await openSignedIn(browser, core.url, pageErrors);
  }, 180_000);
  afterAll(async () => {
    await browser?.close();
    await core?.stop();
  });

  it('shows the whole chain upstream of the deployment revision', async () => {
    await page.goto(`${core.url}/lineage?kind=serving.revision&id=rev-1&direction=up&depth=10`);
    await page.locator('[data-test=lineage-nodes]').waitFor();
    for (const node of CHAIN) {
      await expect.poll(() => page.locator(`[data-test="lineage-node-${node.kind}-${node.id}"]`).textContent()).toContain(node.label);
    }
    await page.locator('.aip-chart canvas').first().waitFor();
    expect(await page.locator('[data-test=lineage-truncated]').count()).toBe(0);
    await page.waitForTimeout(500);
    await fullPageScreenshot(page, SHOTS.graph);
  });

  it('shows a node’s details, and moves to its lineage', async () => {
    await page.click('[data-test="lineage-node-models.version-mv-1"]');
    const details = page.locator('[data-test=lineage-details]');
    await details.waitFor();
    expect(await details.textContent()).toContain('llama-sft v1');
    expect(await details.textContent()).toContain('2 up');
    await fullPageScreenshot(page, SHOTS.details);
    await details.getByText('Show its lineage').click();
    await page.waitForURL(/kind=models.version&id=mv-1/);
    // Both ways from the model version: the whole chain again.
    await expect.poll(() => page.locator('[data-test=lineage-nodes] button').count()).toBe(5);
    expect(await page.locator('[data-test="lineage-node-models.version-mv-1"]').getAttribute('class')).toContain('lineage-graph__node--root');
    expect(pageErrors).toEqual([]);
  });
});
