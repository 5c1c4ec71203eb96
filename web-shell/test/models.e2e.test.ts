/**
 * The models plugin's UI in Chromium against a real core with the models and lineage plugins: a
 * model with two versions uploaded through the API from small model folders written here byte for
 * byte (a `config.json` and a `model.safetensors`: 8-byte little-endian header length, JSON header,
 * tensor data), of different sizes and dtypes. In the browser: the list, the versions table with the
 * metadata read from the files, a version's drawer, the card rendered safely, the comparison of both
 * versions with the differing rows highlighted, promotion draft → staging → production (the API
 * agrees), the lineage tab; then the same pages in zh-CN. Screenshots under /tmp.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { buildUiIfStale, fullPageScreenshot, launchChromium, openSignedIn } from './browser.js';
import modelsEn from '../../plugins/models/web/src/locales/en.js';
import modelsZh from '../../plugins/models/web/src/locales/zh-CN.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const API = '/api/plugins/models';
const SHOTS = {
  list: '/tmp/aiplat-models-list.png',
  versions: '/tmp/aiplat-models-versions.png',
  drawer: '/tmp/aiplat-models-drawer.png',
  card: '/tmp/aiplat-models-card.png',
  compare: '/tmp/aiplat-models-compare.png',
  promote: '/tmp/aiplat-models-promote.png',
  lineage: '/tmp/aiplat-models-lineage.png',
  listZh: '/tmp/aiplat-models-list-zh.png',
  compareZh: '/tmp/aiplat-models-compare-zh.png',
  promoteZh: '/tmp/aiplat-models-promote-zh.png',
};

// ---- tiny model folders, written byte for byte -------------------------------------------------

type Dtype = 'F32' | 'F16' | 'BF16';
const BYTES: Record<Dtype, number> = { F32: 4, F16: 2, BF16: 2 };

/** A `.safetensors` file: u64 LE header length, the JSON header (padded with spaces to 8 bytes), the data. */
function safetensors(tensors: { name: string; dtype: Dtype; shape: number[] }[]): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const head = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  // Some non-zero weights, so the two versions' files differ in content too.
  for (let i = 8 + head.length; i < out.length; i++) out[i] = (i * 31) & 0xff;
  return out;
}

function llama(hidden: number, layers: number, vocab: number, dtype: Dtype) {
  const tensors = [{ name: 'model.embed_tokens.weight', dtype, shape: [vocab, hidden] }];
  for (let l = 0; l < layers; l++) tensors.push({ name: `model.layers.${l}.mlp.up_proj.weight`, dtype, shape: [hidden, hidden] });
  tensors.push({ name: 'model.norm.weight', dtype, shape: [hidden] });
  const parameters = tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    torch_dtype: dtype === 'F32' ? 'float32' : dtype === 'F16' ? 'float16' : 'bfloat16',
    hidden_size: hidden,
    num_hidden_layers: layers,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    vocab_size: vocab,
    max_position_embeddings: 128,
  };
  return {
    parameters,
    dtype,
    files: [
      { name: 'config.json', content: new TextEncoder().encode(JSON.stringify(config, null, 2)) },
      { name: 'model.safetensors', content: safetensors(tensors) },
    ],
  };
}

const V1 = llama(16, 1, 32, 'F32'); // 784 parameters, float32
const V2 = llama(32, 2, 64, 'BF16'); // 4,128 parameters, bfloat16
const CARD = '# Tiny llama\n\nA **tiny** model for the browser test.\n\n<img src=x onerror="window.__cardXss = 1">\n\n<script>window.__cardXss = 2</script>\n';

describe('models in Chromium', () => {
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  let modelId: string;
  const versionIds: Record<number, string> = {};
  const pageErrors: string[] = [];

  async function upload(files: { name: string; content: Uint8Array }[]) {
    const form = new FormData();
    for (const f of files) form.append('file', new Blob([f.content]), f.name);
    const res = await fetch(new URL(`${API}/models/${modelId}/versions`, core.url), { method: 'POST', headers: { authorization: `Bearer ${core.client.token}` }, body: form });
    const body = (await res.json()) as { id: string; number: number; metadata: { parameters: number; dtype: string } };
    expect(res.status, JSON.stringify(body)).toBe(201);
    return body;
  }
  const stageOf = async (id: string) => (await core.client.get(`${API}/versions/${id}`)).body.stage as string;
  const text = async (selector: string) => ((await page.locator(selector).first().textContent()) ?? '').trim();
  const compact = (locale: string, n: number) => new Intl.NumberFormat(locale, { notation: 'compact', maximumFractionDigits: 1 }).format(n);

  async function openTab(name: string) {
    await page.locator(`[id="tab-${name}"]`).click();
  }
  async function promote(to: 'staging' | 'production', confirmText: string) {
    await page.locator(`[data-test=promote-to-${to}]`).click();
    const confirm = page.locator('[data-test=confirm]:visible');
    await expect.poll(() => confirm.textContent()).toContain(confirmText);
    await confirm.click();
    await page.locator('[data-test=confirm]').first().waitFor({ state: 'hidden' });
  }

  beforeAll(async () => {
    buildUiIfStale();
    [core, browser] = await Promise.all([startTestCore({ plugins: [path.join(ROOT, 'plugins', 'models'), path.join(ROOT, 'plugins', 'lineage')] }), launchChromium()]);
    const created = await core.client.post(`${API}/models`, { name: 'tiny-llama', description: 'A tiny Llama written byte for byte by the test', card: CARD });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    modelId = created.body.id;
    const v1 = await upload(V1.files);
    const v2 = await upload(V2.files);
    expect(v1.metadata).toMatchObject({ parameters: V1.parameters, dtype: 'F32' });
    expect(v2.metadata).toMatchObject({ parameters: V2.parameters, dtype: 'BF16' });
    versionIds[1] = v1.id;
    versionIds[2] = v2.id;
    // v2 comes from a training run, as lineage records it (the training plugin would).
    const edge = await core.client.post('/api/plugins/lineage/edges', {
      from: { kind: 'training.run', id: 'run-7', label: 'sft run 7' },
      to: { kind: 'models.version', id: v2.id, label: 'tiny-llama v2' },
      relation: 'trained-from',
    });
    expect(edge.status, JSON.stringify(edge.body)).toBe(204);
    page = await openSignedIn(browser, core.url, pageErrors);
  }, 180_000);
  afterAll(async () => {
    await browser?.close();
    await core?.stop();
  });

  it('lists the model, reached from the navigation', async () => {
    await page.locator('[data-test=nav-models-list-nav]').click();
    await page.waitForURL(`${core.url}/models`);
    await page.locator('[data-test=model-row-tiny-llama]').waitFor();
    await expect.poll(() => text('[data-test=model-versions-tiny-llama]')).toBe('2');
    expect(await text('[data-test=model-latest-tiny-llama]')).toContain('v2');
    await page.locator('[data-test=models-search]').fill('nothing-like-it');
    await expect.poll(() => page.locator('[data-test=model-row-tiny-llama]').count()).toBe(0);
    expect(await page.locator('[data-test=models-table]').textContent()).toContain(modelsEn.list.emptyFiltered);
    await page.locator('[data-test=models-search]').fill('tiny');
    await page.locator('[data-test=model-row-tiny-llama]').waitFor();
    await fullPageScreenshot(page, SHOTS.list);
  });

  it('shows the metadata read from the files in the versions table, and a version’s details', async () => {
    await page.locator('[data-test=model-row-tiny-llama]').click();
    await page.waitForURL(`${core.url}/models/${modelId}`);
    await page.locator('[data-test=versions-table]').waitFor();
    for (const [n, v] of [[1, V1], [2, V2]] as const) {
      expect(await page.locator(`[data-test=version-parameters-${n}]`).getAttribute('data-value')).toBe(String(v.parameters));
      expect(await text(`[data-test=version-parameters-${n}]`)).toBe(compact('en', v.parameters));
      expect(await text(`[data-test=version-dtype-${n}]`)).toBe(v.dtype);
      expect(await text(`[data-test=version-stage-${n}]`)).toBe(modelsEn.stage.draft);
    }
    await fullPageScreenshot(page, SHOTS.versions);

    await page.locator('[data-test=version-details-2]').click();
    const drawer = page.locator('[data-test=version-drawer-2]');
    await drawer.waitFor();
    expect(await text('[data-test=version-meta-architecture]')).toBe('LlamaForCausalLM');
    expect(await text('[data-test=version-meta-torchDtype]')).toBe('bfloat16');
    expect(await text('[data-test=version-meta-parameters]')).toBe('4,128');
    expect(await drawer.locator('[data-test=version-files]').textContent()).toContain('model.safetensors');
    // A file downloads with the bearer token (fetched as a blob, then saved).
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-test="version-file-config.json"]').click()]);
    expect(download.suggestedFilename()).toBe('config.json');
    await page.waitForTimeout(300);
    await page.screenshot({ path: SHOTS.drawer });
    await page.keyboard.press('Escape');
    await drawer.waitFor({ state: 'hidden' });
  });

  it('renders the card as Markdown, without running what it embeds', async () => {
    await openTab('card');
    const card = page.locator('[data-test=model-card-html]');
    await card.waitFor();
    expect(await card.locator('h1').textContent()).toBe('Tiny llama');
    expect(await card.locator('strong').textContent()).toBe('tiny');
    expect(await card.locator('script').count()).toBe(0);
    expect(await card.locator('img').getAttribute('onerror')).toBeNull();
    expect(await page.evaluate('window.__cardXss')).toBeUndefined();
    expect(await page.locator('[data-test=model-card-edit]').count()).toBe(1);
    await fullPageScreenshot(page, SHOTS.card);
  });

  it('compares both versions side by side, the differing rows highlighted', async () => {
    await openTab('versions');
    const rows = page.locator('[data-test=versions-table] .el-table__body tr');
    await expect.poll(() => rows.count()).toBe(2);
    for (let i = 0; i < 2; i++) await rows.nth(i).locator('.el-checkbox').first().click();
    await page.locator('[data-test=versions-compare]').click();
    await page.locator('[data-test=compare-table]').waitFor();
    // Oldest first: column 0 is v1, column 1 is v2.
    expect(await text('[data-test=compare-version-0]')).toContain('v1');
    expect(await text('[data-test=compare-version-1]')).toContain('v2');
    expect(await text('[data-test=compare-metadata-parameters-0]')).toBe('784');
    expect(await text('[data-test=compare-metadata-parameters-1]')).toBe('4,128');
    expect(await text('[data-test=compare-metadata-dtype-0]')).toBe('F32');
    expect(await text('[data-test=compare-metadata-dtype-1]')).toBe('BF16');
    expect(await text('[data-test=compare-metadata-hiddenSize-0]')).toBe('16');
    expect(await text('[data-test=compare-metadata-hiddenSize-1]')).toBe('32');
    for (const field of ['parameters', 'dtype', 'torchDtype', 'hiddenSize', 'layers', 'vocabSize', 'totalBytes']) {
      expect(await page.locator(`[data-test=compare-field-${field}]`).getAttribute('data-differs'), field).toBe('true');
    }
    for (const field of ['architecture', 'format', 'files']) {
      expect(await page.locator(`[data-test=compare-field-${field}]`).getAttribute('data-differs'), field).toBe('false');
    }
    // Differing rows carry the highlight.
    const highlighted = page.locator('[data-test=compare-table] tr.compare-tab__differs');
    expect(await highlighted.count()).toBeGreaterThanOrEqual(7);
    const api = (await core.client.get(`${API}/compare?versions=${versionIds[1]},${versionIds[2]}`)).body as { differences: number };
    expect(await text('[data-test=compare-differences]')).toBe(`${api.differences} differences`);
    await page.locator('[data-test=compare-only-differences]').click();
    await expect.poll(() => page.locator('[data-test=compare-field-architecture]').count()).toBe(0);
    await page.locator('[data-test=compare-only-differences]').click();
    await fullPageScreenshot(page, SHOTS.compare);
  });

  it('promotes v2 to staging, then production, with a confirmation each time', async () => {
    await openTab('versions');
    await page.locator('[data-test=version-promote-2]').click();
    await page.locator('[data-test=promote-tab]').waitFor();
    await expect.poll(() => text('[data-test=promote-current]')).toBe(modelsEn.stage.draft);
    await promote('staging', 'Move to Staging');
    await expect.poll(() => text('[data-test=promote-current]')).toBe(modelsEn.stage.staging);
    expect(await stageOf(versionIds[2]!)).toBe('staging');
    await promote('production', 'Move to Production');
    await expect.poll(() => text('[data-test=promote-current]')).toBe(modelsEn.stage.production);
    expect(await stageOf(versionIds[2]!)).toBe('production');
    await page.locator('[data-test=promote-history]').waitFor();
    // Registered as a draft, then the two changes.
    await expect.poll(() => page.locator('[data-test=promote-history] .el-table__body tr').count()).toBe(3);
    expect(await text('[data-test=model-production]')).toContain('v2');
    await fullPageScreenshot(page, SHOTS.promote);
    await openTab('versions');
    expect(await page.locator('[data-test=version-stage-2] .el-tag').getAttribute('data-stage')).toBe('production');
    expect(await text('[data-test=version-stage-1]')).toBe(modelsEn.stage.draft);
  });

  it('embeds the lineage graph of the chosen version', async () => {
    await openTab('lineage:graph');
    const tab = page.locator('[data-test="model-tab-lineage:graph"]');
    await tab.waitFor();
    // v2 (chosen on the promote tab): its training run upstream, drawn by lineage's own graph.
    await tab.locator('[data-test="lineage-node-training.run-run-7"]').waitFor();
    await tab.locator(`[data-test="lineage-node-models.version-${versionIds[2]}"]`).waitFor();
    await tab.locator('.aip-chart canvas').first().waitFor();
    await page.waitForTimeout(500);
    await fullPageScreenshot(page, SHOTS.lineage);
    // v1 has none: lineage's empty state.
    await page.locator('[data-test=model-tab-version-graph]').click();
    await page.locator('.el-select-dropdown__item:visible', { hasText: 'v1' }).click();
    await expect.poll(() => tab.textContent()).toContain('No lineage recorded');
  });

  it('does the same in zh-CN: the list, the comparison and a promotion', async () => {
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-zh-CN]:visible').click();
    await expect.poll(() => page.evaluate('document.documentElement.lang')).toBe('zh-CN');
    await openTab('versions');
    await expect.poll(() => text('[data-test=version-stage-2]')).toBe(modelsZh.stage.production);
    expect(await text('[id="tab-compare"]')).toBe(modelsZh.detail.tabs.compare);
    expect(await text(`[data-test=version-parameters-2]`)).toBe(compact('zh-CN', V2.parameters));

    // Compare (the selection is still v1 and v2).
    await openTab('compare');
    await page.locator('[data-test=compare-table]').waitFor();
    expect(await text('[data-test=compare-field-parameters]')).toBe(modelsZh.compare.fields.parameters);
    expect(await text('[data-test=compare-metadata-dtype-0]')).toBe('F32');
    expect(await text('[data-test=compare-metadata-dtype-1]')).toBe('BF16');
    expect(await text('[data-test=compare-version-1]')).toContain(modelsZh.stage.production);
    await expect.poll(() => text('[data-test=compare-differences]')).toMatch(/处差异$/);
    await fullPageScreenshot(page, SHOTS.compareZh);

    // Promote v1 to staging, then production: v2 is archived.
    await openTab('promote');
    await page.locator('[data-test=promote-version]').click();
    await page.locator('[data-test=promote-version-1]:visible').click();
    await expect.poll(() => text('[data-test=promote-current]')).toBe(modelsZh.stage.draft);
    await promote('staging', `移动到${modelsZh.stage.staging}`);
    await expect.poll(() => text('[data-test=promote-current]')).toBe(modelsZh.stage.staging);
    await promote('production', `移动到${modelsZh.stage.production}`);
    await expect.poll(() => text('[data-test=promote-current]')).toBe(modelsZh.stage.production);
    expect(await stageOf(versionIds[1]!)).toBe('production');
    expect(await stageOf(versionIds[2]!)).toBe('archived');
    await fullPageScreenshot(page, SHOTS.promoteZh);

    await page.locator('[data-test=model-back]').click();
    await page.waitForURL(`${core.url}/models`);
    await expect.poll(() => text('[data-test=nav-models-list-nav]')).toBe('模型');
    await page.locator('[data-test=model-row-tiny-llama]').waitFor();
    await fullPageScreenshot(page, SHOTS.listZh);
    expect(pageErrors).toEqual([]);
  });
});
