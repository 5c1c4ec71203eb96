/**
 * The datasets pages in Chromium against a real core with the datasets and lineage plugins: a
 * dataset is created in the dialog; three files (an instruction JSONL with one malformed line, a CSV
 * and a text file) are dropped on the upload zone and uploaded with tus while the first PATCH is
 * aborted on its way (the upload resumes: HEAD, then PATCH again) and become version 1, whose
 * checksums the server stored as the browser computed them; version 2 re-offers the JSONL (staged by
 * checksum, no upload), changes the CSV and removes the text file. Then the versions table, the diff
 * (one changed, one removed), the CSV's preview (columns, row count), the JSONL's validation report
 * (the malformed line), version tags, the archive download, the lineage tab and an import from a
 * server folder; then the pages in zh-CN. Screenshots under /tmp.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page, Request } from 'playwright-core';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { buildUiIfStale, fullPageScreenshot, launchChromium, openSignedIn } from './browser.js';
import shellMessages from '../src/locales/shell.js';
import datasetsEn from '../../plugins/datasets/web/src/locales/en.js';
import datasetsZh from '../../plugins/datasets/web/src/locales/zh-CN.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const API = '/api/plugins/datasets';
const SHOTS = {
  list: '/tmp/aiplat-datasets-list.png',
  create: '/tmp/aiplat-datasets-create.png',
  upload: '/tmp/aiplat-datasets-upload.png',
  refused: '/tmp/aiplat-datasets-upload-refused.png',
  versions: '/tmp/aiplat-datasets-versions.png',
  diff: '/tmp/aiplat-datasets-diff.png',
  csv: '/tmp/aiplat-datasets-preview-csv.png',
  validation: '/tmp/aiplat-datasets-validation.png',
  lineage: '/tmp/aiplat-datasets-lineage.png',
  import: '/tmp/aiplat-datasets-import.png',
  listZh: '/tmp/aiplat-datasets-list-zh.png',
  detailZh: '/tmp/aiplat-datasets-detail-zh.png',
};
const zh = { ...shellMessages['zh-CN'], datasets: datasetsZh };
const en = datasetsEn;

const JSONL = [
  JSON.stringify({ instruction: 'Say hello', output: 'Hello!' }),
  JSON.stringify({ instruction: 'Add 2 and 3', input: '2, 3', output: '5' }),
  '{"instruction": "broken line", "output": ',
  JSON.stringify({ instruction: 'Name a colour', output: 'Blue' }),
].join('\n') + '\n';
const CSV_V1 = 'id,text,label\n1,hello,0\n2,world,1\n3,again,0\n';
const CSV_V2 = 'id,text,label\n1,hello,0\n2,world,1\n3,again,0\n4,more,1\n';
const NOTES = 'Notes about this dataset.\nSecond line.\n';
const sha = (text: string) => createHash('sha256').update(text).digest('hex');

interface DatasetJson {
  id: string;
  versions: { id: string; number: number; tags: string[]; changes: { added: number; removed: number; changed: number } }[];
}

describe('datasets in Chromium', () => {
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  let datasetId = '';
  let importRoot = '';
  const pageErrors: string[] = [];
  const uploads: { method: string; url: string }[] = [];

  beforeAll(async () => {
    buildUiIfStale();
    core = await startTestCore({ plugins: [path.join(ROOT, 'plugins', 'datasets'), path.join(ROOT, 'plugins', 'lineage')] });
    importRoot = await mkdtemp(path.join(os.tmpdir(), 'aiplat-datasets-e2e-'));
    browser = await launchChromium();
    page = await openSignedIn(browser, core.url, pageErrors);
    page.on('request', (r: Request) => {
      if (r.url().includes(`${API}/uploads`)) uploads.push({ method: r.method(), url: r.url() });
    });
  }, 180_000);
  afterAll(async () => {
    await browser?.close();
    await core?.stop();
    if (importRoot) await rm(importRoot, { recursive: true, force: true });
  });

  const dataset = async () => (await core.client.get<DatasetJson>(`${API}/datasets/${datasetId}`)).body;
  const openTab = async (name: string) => {
    await page.locator(`[id="tab-${name}"]`).click();
    await page.waitForTimeout(200);
  };
  /** The input of an Element Plus field, whichever element its data-test landed on. */
  const field = (name: string) => page.locator(`input[data-test=${name}], [data-test=${name}] input`).first();
  /** Drop files on the upload zone as a person would: a DataTransfer of File objects through dragenter, dragover and drop (this file is type-checked without the DOM, hence the string). */
  const dropFiles = (files: { name: string; content: string; type: string }[]) =>
    page.evaluate(`(() => {
      const dt = new DataTransfer();
      for (const f of ${JSON.stringify(files)}) dt.items.add(new File([f.content], f.name, { type: f.type }));
      const zone = document.querySelector('[data-test=upload-drop]');
      for (const type of ['dragenter', 'dragover', 'drop']) zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
    })()`);
  const doneItems = () => page.locator('[data-test=upload-item][data-status=uploaded], [data-test=upload-item][data-status=reused]').count();

  it('creates a dataset', async () => {
    await page.goto(`${core.url}/datasets`);
    await page.locator('[data-test=datasets-page]').waitFor();
    await page.locator('[data-test=datasets-empty]').waitFor();
    await page.click('[data-test=datasets-new]');
    await page.locator('[data-test=dataset-form-dialog]').waitFor();
    await page.fill('[data-test=dataset-form-name]', 'chat-sft');
    await page.fill('[data-test=dataset-form-description]', 'Instruction data for the support assistant');
    await field('dataset-form-tags').fill('llm');
    await page.keyboard.press('Enter');
    await field('dataset-form-tags').fill('support');
    await page.keyboard.press('Enter');
    await page.click('[data-test=dataset-form-keep-newest]');
    await field('dataset-form-keep-count').fill('3');
    await page.keyboard.press('Tab');
    await page.screenshot({ path: SHOTS.create });
    await page.click('[data-test=dataset-form-submit]');
    await page.waitForURL(/\/datasets\/[^/?]+$/);
    datasetId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    await page.locator('[data-test=dataset-header]').waitFor();
    expect(await page.locator('[data-test=dataset-task-type]').getAttribute('data-value')).toBe('instruction');
    expect(await page.locator('[data-test=dataset-retention]').getAttribute('data-value')).toBe('3');
    expect(await page.locator('[data-test=dataset-tags]').innerText()).toContain('support');
    const d = await dataset();
    expect(d.versions).toEqual([]);
    await page.locator('[data-test=versions-empty]').waitFor();
  });

  it('uploads dropped files as version 1, resuming a PATCH that failed', async () => {
    let aborted = 0;
    await page.route('**/api/plugins/datasets/uploads/**', async (route) => {
      if (route.request().method() === 'PATCH' && aborted === 0) {
        aborted++;
        await route.abort('connectionreset');
        return;
      }
      await route.continue();
    });
    await openTab('upload');
    await page.locator('[data-test=upload-drop]').waitFor();
    await dropFiles([
      { name: 'train.jsonl', content: JSONL, type: 'application/x-ndjson' },
      { name: 'labels.csv', content: CSV_V1, type: 'text/csv' },
      { name: 'notes.txt', content: NOTES, type: 'text/plain' },
    ]);
    await expect.poll(() => page.locator('[data-test=upload-item]').count()).toBe(3);
    await expect.poll(doneItems, { timeout: 30_000 }).toBe(3);
    expect(await page.locator('[data-test=upload-item-error]').count()).toBe(0);
    expect(await page.locator('[data-test=upload-overall]').getAttribute('data-percent')).toBe('100');
    await page.unroute('**/api/plugins/datasets/uploads/**');
    // The aborted PATCH was retried: tus asked the server for its offset (HEAD), then sent the rest.
    expect(aborted).toBe(1);
    const created = uploads.filter((u) => u.method === 'POST');
    expect(created).toHaveLength(3);
    const resumed = uploads.filter((u) => u.method === 'HEAD');
    expect(resumed.length).toBeGreaterThanOrEqual(1);
    const resumedUrl = resumed[0]!.url;
    expect(uploads.filter((u) => u.method === 'PATCH' && u.url === resumedUrl).length).toBeGreaterThanOrEqual(2);
    expect(await page.locator('[data-test=upload-staged]').getAttribute('data-put')).toBe('3');
    await page.fill('[data-test=upload-message]', 'First cut');
    await fullPageScreenshot(page, SHOTS.upload);
    await page.click('[data-test=upload-create]');
    await page.locator('[data-test=version-row-1]').waitFor();
    expect(new URL(page.url()).searchParams.get('tab')).toBeNull();
    const d = await dataset();
    expect(d.versions.map((v) => v.number)).toEqual([1]);
    // The server stored each file under the checksum the browser computed.
    const files = (await core.client.get<{ items: { path: string; sha256: string; size: number }[] }>(`${API}/versions/${d.versions[0]!.id}/files`)).body.items;
    expect(Object.fromEntries(files.map((f) => [f.path, f.sha256]))).toEqual({ 'labels.csv': sha(CSV_V1), 'notes.txt': sha(NOTES), 'train.jsonl': sha(JSONL) });
    expect(await page.locator('[data-test=version-files-1]').innerText()).toBe('3');
  });

  it("shows the server's refusals: a bad path, a checksum that does not match", async () => {
    await openTab('upload');
    await page.locator('[data-test=upload-drop]').waitFor();
    // A path that climbs out of the dataset.
    await field('upload-prefix').fill('../outside');
    await dropFiles([{ name: 'evil.txt', content: 'nope\n', type: 'text/plain' }]);
    const evil = page.locator('[data-test=upload-item][data-path="../outside/evil.txt"]');
    await expect.poll(() => evil.getAttribute('data-status'), { timeout: 15_000 }).toBe('failed');
    const badPath = await evil.locator('[data-test=upload-item-error]').innerText();
    expect(badPath).toContain('../outside/evil.txt');
    await evil.locator('xpath=ancestor::tr').locator('[data-test=upload-item-remove]').click();
    await field('upload-prefix').fill('');
    // The checksum the client announces is not the content's: the server refuses the upload when the last byte arrives.
    await page.route('**/api/plugins/datasets/uploads', async (route) => {
      const headers = route.request().headers();
      const metadata = (headers['upload-metadata'] ?? '')
        .split(',')
        .map((pair) => (pair.startsWith('sha256 ') ? `sha256 ${Buffer.from('0'.repeat(64)).toString('base64')}` : pair))
        .join(',');
      await route.continue({ headers: { ...headers, 'upload-metadata': metadata } });
    });
    await dropFiles([{ name: 'wrong.txt', content: 'the content\n', type: 'text/plain' }]);
    const wrong = page.locator('[data-test=upload-item][data-path="wrong.txt"]');
    await expect.poll(() => wrong.getAttribute('data-status'), { timeout: 15_000 }).toBe('failed');
    const mismatch = await wrong.locator('[data-test=upload-item-error]').innerText();
    expect(mismatch).toMatch(/sha-?256|checksum/i);
    await page.unroute('**/api/plugins/datasets/uploads');
    await fullPageScreenshot(page, SHOTS.refused);
    // Nothing was staged; discard the commit.
    expect(await page.locator('[data-test=upload-staged]').getAttribute('data-put')).toBe('0');
    await page.click('[data-test=upload-discard]');
    await expect.poll(() => page.locator('[data-test=upload-item]').count()).toBe(0);
  });

  it('makes version 2: the JSONL staged by checksum, the CSV changed, the text file removed', async () => {
    const before = uploads.length;
    await openTab('upload');
    await page.locator('[data-test="base-file-notes.txt"]').waitFor();
    const reuse = page.waitForResponse((r) => r.request().method() === 'POST' && /\/commits\/[^/]+\/files$/.test(r.url()) && (r.request().postDataJSON() as { path: string }).path === 'train.jsonl');
    await page.locator('[data-test=upload-input]').setInputFiles([
      { name: 'train.jsonl', mimeType: 'application/x-ndjson', buffer: Buffer.from(JSONL) },
      { name: 'labels.csv', mimeType: 'text/csv', buffer: Buffer.from(CSV_V2) },
    ]);
    const answer = await reuse;
    expect(answer.status()).toBe(200);
    const commit = (await answer.json()) as { changes: { path: string; op: string; sha256: string | null; size: number | null }[] };
    expect(commit.changes.find((c) => c.path === 'train.jsonl')).toMatchObject({ op: 'put', sha256: sha(JSONL), size: Buffer.byteLength(JSONL) });
    await expect.poll(doneItems, { timeout: 30_000 }).toBe(2);
    expect(await page.locator('[data-test=upload-item][data-path="train.jsonl"]').getAttribute('data-status')).toBe('reused');
    expect(await page.locator('[data-test=upload-item][data-path="labels.csv"]').getAttribute('data-status')).toBe('uploaded');
    // Only the CSV went through tus.
    expect(uploads.slice(before).filter((u) => u.method === 'POST')).toHaveLength(1);
    await page.click('[data-test="base-file-toggle-notes.txt"]');
    await expect.poll(() => page.locator('[data-test="base-file-notes.txt"]').getAttribute('data-removed')).toBe('true');
    await expect.poll(() => page.locator('[data-test=upload-staged]').getAttribute('data-del')).toBe('1');
    await page.fill('[data-test=upload-message]', 'More labels, no notes');
    await page.click('[data-test=upload-create]');
    await page.locator('[data-test=version-row-2]').waitFor();
    const changes = page.locator('[data-test=version-changes-2]');
    expect(await changes.getAttribute('data-added')).toBe('0');
    expect(await changes.getAttribute('data-removed')).toBe('1');
    expect(await changes.getAttribute('data-changed')).toBe('1');
    expect(await page.locator('[data-test=version-files-2]').innerText()).toBe('2');
    expect(await page.locator('[data-test=versions-table]').innerText()).toContain('More labels, no notes');
  });

  it('tags a version and downloads its archive', async () => {
    await page.click('[data-test=version-tag-add-1]');
    await page.fill('[data-test=version-tag-input-1]', 'golden');
    await page.keyboard.press('Enter');
    await page.locator('[data-test=version-tag-1-golden]').waitFor();
    const d = await dataset();
    expect(d.versions.find((v) => v.number === 1)!.tags).toEqual(['golden']);
    const download = page.waitForEvent('download');
    await page.click('[data-test=version-archive-2]');
    expect((await download).suggestedFilename()).toBe('chat-sft-v2.tar');
    await fullPageScreenshot(page, SHOTS.versions);
  });

  it('shows the diff of version 2 against its parent', async () => {
    await openTab('diff');
    const summary = page.locator('[data-test=diff-summary]');
    await summary.waitFor();
    expect(await summary.getAttribute('data-changed')).toBe('1');
    expect(await summary.getAttribute('data-removed')).toBe('1');
    expect(await summary.getAttribute('data-added')).toBe('0');
    expect(await page.locator('[data-test=diff-changed]').innerText()).toContain('labels.csv');
    expect(await page.locator('[data-test=diff-removed]').innerText()).toContain('notes.txt');
    await fullPageScreenshot(page, SHOTS.diff);
  });

  it('previews the CSV and validates the JSONL', async () => {
    await openTab('files');
    await page.locator('[data-test="file-row-labels.csv"]').click();
    const preview = page.locator('[data-test=preview][data-path="labels.csv"]');
    await preview.locator('[data-test=preview-table]').waitFor();
    expect(await preview.getAttribute('data-kind')).toBe('csv');
    expect(await preview.locator('[data-test=preview-row-count]').getAttribute('data-count')).toBe('4');
    for (const column of ['id', 'text', 'label']) await preview.locator(`[data-test=preview-column-${column}]`).waitFor();
    expect(await preview.locator('[data-test=preview-column-id]').getAttribute('data-type')).toMatch(/int|number/);
    expect(await preview.locator('[data-test=preview-table]').innerText()).toContain('more');
    await fullPageScreenshot(page, SHOTS.csv);
    await page.locator('[data-test="file-row-train.jsonl"]').click();
    const report = page.locator('[data-test=validation-report]');
    await report.waitFor();
    expect(await report.getAttribute('data-format')).toBe('instruction');
    expect(await report.getAttribute('data-invalid')).toBe('1');
    expect(await report.getAttribute('data-valid')).toBe('3');
    await page.locator('[data-test=validation-error-line-3]').waitFor();
    await fullPageScreenshot(page, SHOTS.validation);
  });

  it('shows the lineage tab for the chosen version, whose nodes lead back to a version', async () => {
    await openTab('lineage:graph');
    const tab = page.locator('[data-test=contributed-tab-lineage-graph]');
    await tab.waitFor();
    const d = await dataset();
    const [v2, v1] = d.versions;
    // Version 2 was made on top of version 1: the graph shows both.
    await page.locator(`[data-test="lineage-node-datasets.version-${v1!.id}"]`).waitFor();
    await page.locator(`[data-test="lineage-node-datasets.version-${v2!.id}"]`).waitFor();
    await tab.locator('.aip-chart canvas').first().waitFor();
    await page.waitForTimeout(400);
    await fullPageScreenshot(page, SHOTS.lineage);
    // Lineage links a dataset version to /datasets/versions/:vid, which lands on this page with that version chosen.
    await page.click(`[data-test="lineage-node-datasets.version-${v1!.id}"]`);
    await page.waitForURL((url) => url.searchParams.get('version') === v1!.id);
    expect(new URL(page.url()).pathname).toBe(`/datasets/${datasetId}`);
    await openTab('files');
    await expect.poll(() => page.locator('[data-test=files-version]').innerText()).toContain('v1');
    await page.locator('[data-test="file-row-notes.txt"]').waitFor();
    await page.goto(`${core.url}/datasets/${datasetId}`);
    await page.locator('[data-test=versions-table]').waitFor();
  });

  it('imports a server folder as version 3', async () => {
    const folder = path.join(importRoot, 'export');
    await mkdir(path.join(folder, 'extra'), { recursive: true });
    await writeFile(path.join(folder, 'train.jsonl'), JSONL);
    await writeFile(path.join(folder, 'extra', 'more.csv'), CSV_V1);
    expect((await core.client.put('/api/v1/plugins/datasets/config', { importRoots: [importRoot] })).status).toBe(200);
    await openTab('versions');
    await page.click('[data-test=dataset-import]');
    await page.locator('[data-test=import-dialog]').waitFor();
    await page.fill('[data-test=import-path]', folder);
    await page.fill('[data-test=import-message]', 'From the export');
    await page.click('[data-test=import-start]');
    await expect.poll(() => page.locator('[data-test=import-progress]').getAttribute('data-state'), { timeout: 30_000 }).toBe('succeeded');
    expect(await page.locator('[data-test=import-title]').innerText()).toBe(en.import.succeeded.replace('{n}', '3'));
    await page.screenshot({ path: SHOTS.import });
    await page.click('[data-test=import-close]');
    await page.locator('[data-test=version-row-3]').waitFor();
    expect(await page.locator('[data-test=versions-table]').innerText()).toContain(en.versions.source.import);
  });

  it('refuses to delete a tagged version, and deletes an untagged one', async () => {
    const remove = async (n: number) => {
      await page.click(`[data-test=version-more-${n}]`);
      await page.locator(`[data-test=version-delete-${n}]:visible`).click();
      await page.locator('.el-dialog [data-test=confirm]:visible').click();
    };
    await remove(1);
    await expect.poll(() => page.locator('.el-message--error').last().innerText()).toMatch(/tag/i);
    await page.locator('[data-test=version-row-1]').waitFor();
    await remove(3);
    await page.locator('[data-test=version-row-3]').waitFor({ state: 'detached' });
    expect((await dataset()).versions.map((v) => v.number)).toEqual([2, 1]);
  });

  it('lists the dataset with its latest version', async () => {
    await page.click('[data-test=dataset-back]');
    await page.waitForURL(`${core.url}/datasets`);
    const link = page.locator('[data-test=dataset-link-chat-sft]');
    await link.waitFor();
    const row = page.locator('[data-test=datasets-table] tbody tr').filter({ has: link });
    expect(await row.locator('[data-test=dataset-latest]').innerText()).toBe('v2');
    expect(await row.locator('[data-test=dataset-version-count]').innerText()).toBe('2');
    await expect.poll(() => row.locator('[data-test=dataset-size]').innerText()).not.toBe('—');
    await page.fill('[data-test=datasets-search]', 'nothing-like-this');
    await page.locator('[data-test=datasets-clear-filters]').waitFor();
    await page.click('[data-test=datasets-clear-filters]');
    await link.waitFor();
    await fullPageScreenshot(page, SHOTS.list);
  });

  it('speaks zh-CN', async () => {
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-zh-CN]:visible').click();
    await expect.poll(() => page.locator('[data-test=datasets-new]').innerText()).toBe(zh.datasets.list.new);
    expect(await page.locator('[data-test=datasets-table] thead').innerText()).toContain(zh.datasets.list.columns.latest);
    await fullPageScreenshot(page, SHOTS.listZh);
    await page.locator('[data-test=dataset-link-chat-sft]').click();
    await page.locator('[data-test=versions-table]').waitFor();
    expect(await page.locator('[id="tab-files"]').innerText()).toBe(zh.datasets.detail.tabs.files);
    expect(await page.locator('[data-test=versions-table] thead').innerText()).toContain(zh.datasets.versions.columns.added);
    expect(await page.locator('[data-test=dataset-retention]').innerText()).toBe(zh.datasets.retention.newest.replace('{n}', '3'));
    await fullPageScreenshot(page, SHOTS.detailZh);
    await openTab('files');
    await page.locator('[data-test="file-row-train.jsonl"]').click();
    await page.locator('[data-test=validation-report]').waitFor();
    expect(await page.locator('[data-test=validation]').innerText()).toContain(zh.datasets.validation.title);
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-en]:visible').click();
    expect(pageErrors).toEqual([]);
  });
});
