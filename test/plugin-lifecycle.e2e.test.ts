/**
 * The whole life of a third-party plugin, end to end with real processes (issue: marketplace):
 * `aiplat-plugin create` → its own tests pass → keygen, build, pack, sign → `publish` to a registry
 * service started here → install into a running core through the API → its route answers and its
 * UI page loads in Chromium → v2 with a migration that adds a column is published → upgrade keeps
 * the old rows → rollback → uninstall. The registry refuses to publish v1 twice.
 *
 * The scaffold lives outside the repository; its dependencies are links into this repository's
 * workspaces and node_modules (what `npm install` from the registry's @aiplat scope gives it: the
 * registry's own test, registry/test/npm.test.ts, does that install for real).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { startRegistry, type RunningRegistry } from '../registry/src/server.js';
import { hashToken } from '../registry/src/publishers.js';
import { linkDependencies, run, runCli } from '../plugin-sdk/cli/test/helpers.js';
import { buildUiIfStale, fullPageScreenshot, launchChromium, openSignedIn } from '../web-shell/test/browser.js';

const REPO = path.resolve(import.meta.dirname, '..');
const ID = 'acme-notes';
const TABLE = 'p_acme_notes_items';
const token = 'lifecycle-publisher-token-0123456789';
const env = () => ({ NO_COLOR: '1', PATH: `${path.join(REPO, 'node_modules', '.bin')}${path.delimiter}${process.env.PATH ?? ''}` });

let tmp: string;
let plugin: string;
let keyFile: string;
let registry: RunningRegistry | undefined;
let core: TestCore | undefined;
let browser: Browser | undefined;

async function finished(operation: { id: string }): Promise<any> {
  for (let i = 0; i < 1200; i++) {
    const { body } = await core!.client.get(`/api/v1/operations/${operation.id}`);
    if (body.state !== 'running') return body;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`operation ${operation.id} did not finish`);
}

async function columns(): Promise<string[]> {
  const rows = await core!.core.database.knex('information_schema.columns').where({ table_schema: 'public', table_name: TABLE }).select('column_name');
  return rows.map((r: { column_name: string }) => r.column_name).sort();
}

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'aiplat-lifecycle-'));
  buildUiIfStale();
});

afterAll(async () => {
  await browser?.close();
  await core?.stop();
  await registry?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('a plugin from create to uninstall', () => {
  it('create: the scaffold passes its own tests', async () => {
    const created = await runCli(['create', ID], { cwd: tmp });
    expect(created.code, created.stderr).toBe(0);
    plugin = path.join(tmp, ID);
    linkDependencies(plugin);
    const test = await run('npm', ['test'], { cwd: plugin, env: env() });
    expect(test.code, test.stdout + test.stderr).toBe(0);
  });

  it('keygen, pack (build and sign), publish; the same version cannot be published twice', async () => {
    keyFile = path.join(tmp, 'acme-key.json');
    const keygen = await runCli(['keygen', '--publisher', 'acme', '--out', keyFile], { cwd: tmp });
    expect(keygen.code, keygen.stderr).toBe(0);
    const key = JSON.parse(readFileSync(keyFile, 'utf8'));
    registry = await startRegistry({
      dataDir: path.join(tmp, 'registry'),
      port: 0,
      host: '127.0.0.1',
      publishers: [{ name: 'acme', tokenSha256: hashToken(token), keys: [{ keyId: key.keyId, publisher: 'acme', algorithm: 'ed25519', publicKey: key.publicKey }] }],
    });
    const pack = await runCli(['pack', plugin, '--key', keyFile, '--out', path.join(tmp, 'v1.tgz')], { cwd: plugin, env: env() });
    expect(pack.code, pack.stdout + pack.stderr).toBe(0);
    const publish = await runCli(['publish', path.join(tmp, 'v1.tgz'), '--registry', registry.url, '--token', token], { cwd: tmp });
    expect(publish.code, publish.stdout + publish.stderr).toBe(0);
    const again = await runCli(['publish', path.join(tmp, 'v1.tgz'), '--registry', registry.url, '--token', token], { cwd: tmp });
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/already published/);
  });

  it('install into a running core: the route answers and the UI page loads in Chromium', async () => {
    const trusted = path.join(tmp, 'trusted.json');
    const key = JSON.parse(readFileSync(keyFile, 'utf8'));
    writeFileSync(trusted, JSON.stringify([{ keyId: key.keyId, publisher: 'acme', publicKey: key.publicKey }]));
    core = await startTestCore({ config: { registries: [registry!.url], trustedKeysFile: trusted } });
    const op = await finished((await core.client.post('/api/v1/plugins/install', { id: ID })).body.operation);
    expect(op, JSON.stringify(op)).toMatchObject({ state: 'succeeded', result: { installed: [{ id: ID, version: '0.1.0', signature: 'signed' }] } });
    expect((await core.client.get(`/api/plugins/${ID}/items`)).body).toEqual({ items: [] });
    await core.core.database.knex(TABLE).insert([{ name: 'first' }, { name: 'second' }]);

    browser = await launchChromium();
    const errors: string[] = [];
    const page = await openSignedIn(browser, core.url, errors);
    await page.goto(`${core.url}/${ID}`);
    await page.getByText('second').waitFor();
    await fullPageScreenshot(page, '/tmp/aiplat-lifecycle-installed-page.png');
    expect(errors).toEqual([]);
  });

  it('v2 adds a column: upgrade keeps the rows, rollback removes the column, uninstall removes everything', async () => {
    // The author's next version: a migration that adds a column (with its down), a changelog entry.
    const manifestFile = path.join(plugin, 'aiplat-plugin.json');
    writeFileSync(manifestFile, readFileSync(manifestFile, 'utf8').replace('"version": "0.1.0"', '"version": "0.2.0"'));
    const source = path.join(plugin, 'src', 'index.ts');
    const code = readFileSync(source, 'utf8');
    expect(code).toContain('env.migrations([');
    writeFileSync(
      source,
      code.replace(
        'env.migrations([',
        `env.migrations([
      {
        name: '0002_priority',
        async up(db: Knex) {
          await db.schema.alterTable(ITEMS_TABLE, (t) => t.integer('priority').notNullable().defaultTo(0));
        },
        async down(db: Knex) {
          await db.schema.alterTable(ITEMS_TABLE, (t) => t.dropColumn('priority'));
        },
      },`,
      ),
    );
    writeFileSync(path.join(plugin, 'CHANGELOG.md'), `${readFileSync(path.join(plugin, 'CHANGELOG.md'), 'utf8')}\n## 0.2.0\n- items have a priority\n`);
    const pack = await runCli(['pack', plugin, '--key', keyFile, '--out', path.join(tmp, 'v2.tgz')], { cwd: plugin, env: env() });
    expect(pack.code, pack.stdout + pack.stderr).toBe(0);
    const publish = await runCli(['publish', path.join(tmp, 'v2.tgz'), '--registry', registry!.url, '--token', token], { cwd: tmp });
    expect(publish.code, publish.stderr).toBe(0);

    expect((await core!.client.get('/api/v1/marketplace/updates')).body.items).toEqual([expect.objectContaining({ id: ID, installed: '0.1.0', latest: '0.2.0' })]);
    const upgraded = await finished((await core!.client.post(`/api/v1/plugins/${ID}/upgrade`, {})).body.operation);
    expect(upgraded.state, JSON.stringify(upgraded)).toBe('succeeded');
    expect(await columns()).toContain('priority');
    expect((await core!.client.get(`/api/plugins/${ID}/items`)).body.items.map((i: { name: string }) => i.name)).toEqual(['first', 'second']);

    const rolledBack = await finished((await core!.client.post(`/api/v1/plugins/${ID}/rollback`, {})).body.operation);
    expect(rolledBack, JSON.stringify(rolledBack)).toMatchObject({ state: 'succeeded', result: { version: '0.1.0', undoneMigrations: ['0002_priority'] } });
    expect(await columns()).not.toContain('priority');
    expect((await core!.client.get(`/api/plugins/${ID}/items`)).body.items).toHaveLength(2);

    const removed = await finished((await core!.client.post(`/api/v1/plugins/${ID}/uninstall`, { keepData: false })).body.operation);
    expect(removed.state).toBe('succeeded');
    expect((await core!.client.get(`/api/plugins/${ID}/items`)).status).toBe(404);
    expect(await columns()).toEqual([]);
    expect(existsSync(path.join(core!.dataDir, 'installed', ID))).toBe(false);
  });
});
