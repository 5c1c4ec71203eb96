// Installs into a running core (docs/adr/0010), end to end with real processes and parts: a real
// registry service (registry/), real signed packages, a real core on the test database. Nothing
// here is a test double.
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { generateKeyPair, publicKeyOf } from '@aiplat/plugin-sdk/package';
import { startRegistry, type RunningRegistry } from '../../../registry/src/server.js';
import { hashToken } from '../../../registry/src/publishers.js';
import { notesPackage, publish } from '../fixtures/packages.js';

const key = generateKeyPair('acme');
const token = 'publisher-token-for-tests-0123456789';
let registry: RunningRegistry;
let core: TestCore;
let work: string;
let mirror: string;

async function waitOperation(core: TestCore, operation: { id: string }): Promise<any> {
  for (let i = 0; i < 600; i++) {
    const { body } = await core.client.get(`/api/v1/operations/${operation.id}`);
    if (body.state !== 'running') return body;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`operation ${operation.id} did not finish`);
}

async function tables(prefix: string): Promise<string[]> {
  const rows = await core.core.database.knex('information_schema.tables').where({ table_schema: 'public' }).andWhereLike('table_name', `${prefix}%`).select('table_name');
  return rows.map((r: { table_name: string }) => r.table_name).sort();
}

async function auditRows(action: string): Promise<any[]> {
  return core.core.database.knex('audit_log').where({ action }).orderBy('id');
}

/** A gzip tar made by hand, for entries no packer writes. */
async function hostileTgz(entries: { name: string; content?: string; type?: 'symlink'; linkname?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c) => void chunks.push(c as Buffer));
  const done = new Promise<void>((r) => pack.on('end', () => r()));
  for (const e of entries) {
    if (e.type === 'symlink') pack.entry({ name: e.name, type: 'symlink', linkname: e.linkname });
    else pack.entry({ name: e.name }, e.content ?? '');
  }
  pack.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks));
}

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'aiplat-install-'));
  registry = await startRegistry({
    dataDir: path.join(work, 'registry'),
    port: 0,
    host: '127.0.0.1',
    publishers: [{ name: 'acme', tokenSha256: hashToken(token), keys: [publicKeyOf(key)] }],
  });
  const packages: Omit<Parameters<typeof notesPackage>[0], 'key'>[] = [
    { version: '1.0.0' },
    { version: '2.0.0', columns: [{ name: '002_priority', column: 'priority' }] },
    { id: 'notes-extra', version: '1.0.0', dependencies: { notes: '^1.0.0' } },
    { id: 'needs-ghost', version: '1.0.0', dependencies: { ghost: '^1.0.0' } },
    { id: 'future', version: '1.0.0', engines: '^9.0.0' },
    { id: 'nodown', version: '1.0.0' },
    { id: 'nodown', version: '2.0.0', columns: [{ name: '002_tag', column: 'tag', down: false }] },
    { id: 'flaky', version: '1.0.0' },
    { id: 'flaky', version: '2.0.0', columns: [{ name: '002_tag', column: 'tag' }], failStart: true },
  ];
  for (const pkg of packages) {
    const { file } = await notesPackage({ ...pkg, key }, work);
    const published = await publish(registry.url, token, readFileSync(file));
    expect(published.status, JSON.stringify(published.body)).toBe(201);
  }
  const keysFile = path.join(work, 'trusted-keys.json');
  writeFileSync(keysFile, JSON.stringify([publicKeyOf(key)]));
  // A copied registry folder (an air-gapped mirror) is a second source.
  mirror = path.join(work, 'mirror');
  cpSync(path.join(work, 'registry'), mirror, { recursive: true });
  core = await startTestCore({ plugins: ['examples/hello'], config: { registries: [registry.url, mirror], trustedKeysFile: keysFile } });
});

afterAll(async () => {
  await core?.stop();
  await registry?.close();
});

describe('marketplace', () => {
  it('searches the registries and shows one plugin with README, versions and compatibility', async () => {
    const list = await core.client.get('/api/v1/marketplace/plugins?q=notes');
    expect(list.status).toBe(200);
    expect(list.body.items.map((i: any) => i.id)).toEqual(expect.arrayContaining(['notes', 'notes-extra']));
    const notes = list.body.items.find((i: any) => i.id === 'notes');
    expect(notes).toMatchObject({ latest: '2.0.0', compatibleVersion: '2.0.0', signed: true, installed: null, source: registry.url });
    expect(list.body.sources).toEqual([
      expect.objectContaining({ location: registry.url, ok: true }),
      expect.objectContaining({ location: mirror, ok: true }),
    ]);
    const future = (await core.client.get('/api/v1/marketplace/plugins?q=future')).body.items[0];
    expect(future.compatibleVersion).toBeNull();

    const page = await core.client.get('/api/v1/marketplace/plugins/notes?version=1.0.0');
    expect(page.status).toBe(200);
    expect(page.body.readme).toContain('Version 1.0.0');
    expect(page.body.changelog).toContain('## 1.0.0');
    expect(page.body.manifest.permissions[0].id).toBe('notes:read');
    expect(page.body.versions.map((v: any) => v.version)).toEqual(['2.0.0', '1.0.0']);
    expect(page.body.compatible).toBe(true);
    const incompatible = await core.client.get('/api/v1/marketplace/plugins/future');
    expect(incompatible.body).toMatchObject({ compatible: false, compatibility: expect.stringMatching(/needs plugin API \^9\.0\.0/) });
    expect((await core.client.get('/api/v1/marketplace/plugins/nope-nope')).status).toBe(404);
  });
});

describe('install, upgrade, rollback, uninstall', () => {
  it('installs from the registry without a restart; its route answers', async () => {
    const started = Date.now();
    const res = await core.client.post('/api/v1/plugins/install', { id: 'notes', version: '^1.0.0' });
    expect(res.status, res.text).toBe(202);
    const op = await waitOperation(core, res.body.operation);
    expect(op, JSON.stringify(op)).toMatchObject({ state: 'succeeded', progress: 1, result: { installed: [{ id: 'notes', version: '1.0.0', state: 'enabled', signature: 'signed' }] } });
    const items = await core.client.get('/api/plugins/notes/items');
    expect(items.status).toBe(200);
    console.log(`[install] notes 1.0.0 answered ${Date.now() - started} ms after the install request`);
    expect((await core.client.post('/api/plugins/notes/items', { text: 'kept across versions' })).status).toBe(200);
    const plugins = await core.client.get('/api/v1/plugins');
    expect(plugins.body.items.find((p: any) => p.id === 'notes')).toMatchObject({ version: '1.0.0', state: 'enabled', installed: { version: '1.0.0', previousVersion: null, signature: 'signed', publisher: 'acme', keyId: key.keyId, source: registry.url } });
    expect(plugins.body.items.find((p: any) => p.id === 'hello')).toMatchObject({ installed: null });
    expect(existsSync(path.join(core.dataDir, 'installed', 'notes', '1.0.0', 'aiplat-plugin.json'))).toBe(true);
    // Installing it again is refused at once.
    expect((await core.client.post('/api/v1/plugins/install', { id: 'notes' })).body.error.code).toBe('plugin_exists');
    expect((await core.client.get('/api/v1/marketplace/updates')).body.items).toEqual([expect.objectContaining({ id: 'notes', installed: '1.0.0', latest: '2.0.0' })]);
  });

  it('upgrades: the old rows stay and the new migration adds its column', async () => {
    const res = await core.client.post('/api/v1/plugins/notes/upgrade', {});
    const op = await waitOperation(core, res.body.operation);
    expect(op, JSON.stringify(op)).toMatchObject({ state: 'succeeded', result: { upgraded: { id: 'notes', version: '2.0.0', from: '1.0.0' } } });
    const items = await core.client.get('/api/plugins/notes/items');
    expect(items.body).toMatchObject({ version: '2.0.0', items: [{ text: 'kept across versions', priority: null }] });
    const row = await core.core.database.knex('installed_plugins').where({ id: 'notes' }).first();
    expect(row).toMatchObject({ version: '2.0.0', previous_version: '1.0.0' });
  });

  it('rolls back: the column the newer version added is gone, the rows stay', async () => {
    const res = await core.client.post('/api/v1/plugins/notes/rollback', {});
    const op = await waitOperation(core, res.body.operation);
    expect(op, JSON.stringify(op)).toMatchObject({ state: 'succeeded', result: { version: '1.0.0', from: '2.0.0', undoneMigrations: ['002_priority'] } });
    const items = await core.client.get('/api/plugins/notes/items');
    expect(items.body).toEqual({ version: '1.0.0', items: [{ id: 1, text: 'kept across versions' }] });
  });

  it('installs what a plugin needs from the registry first', async () => {
    // notes-extra needs notes ^1, which is installed: only notes-extra is added.
    const res = await core.client.post('/api/v1/plugins/install', { id: 'notes-extra' });
    const op = await waitOperation(core, res.body.operation);
    expect(op.state, JSON.stringify(op)).toBe('succeeded');
    expect((await core.client.get('/api/plugins/notes-extra/items')).status).toBe(200);
    // notes cannot go while notes-extra needs it.
    const blocked = await waitOperation(core, (await core.client.post('/api/v1/plugins/notes/uninstall', { keepData: false })).body.operation);
    expect(blocked).toMatchObject({ state: 'failed', error: { code: 'plugin_has_dependents', message: expect.stringMatching(/notes-extra depends on it/) } });
    const removed = await waitOperation(core, (await core.client.post('/api/v1/plugins/notes-extra/uninstall', { keepData: false })).body.operation);
    expect(removed.state).toBe('succeeded');
  });

  it('uninstalls: the route is gone, its tables dropped, every step audited', async () => {
    const res = await core.client.post('/api/v1/plugins/notes/uninstall', { keepData: false });
    const op = await waitOperation(core, res.body.operation);
    expect(op.state, JSON.stringify(op)).toBe('succeeded');
    expect((await core.client.get('/api/plugins/notes/items')).status).toBe(404);
    expect(await tables('p_notes_')).toEqual([]);
    expect(existsSync(path.join(core.dataDir, 'installed', 'notes'))).toBe(false);
    for (const action of ['core:plugin.install', 'core:plugin.upgrade', 'core:plugin.rollback', 'core:plugin.uninstall']) {
      expect((await auditRows(action)).filter((r) => r.outcome === 'success').length, action).toBeGreaterThan(0);
    }
    const install = (await auditRows('core:plugin.install'))[0];
    expect(install).toMatchObject({ actor_type: 'user', resource_id: 'notes' });
  });

  it('installs from a copied registry folder as well', async () => {
    const res = await core.client.post('/api/v1/plugins/install', { id: 'notes', version: '1.0.0', source: mirror });
    const op = await waitOperation(core, res.body.operation);
    expect(op.state, JSON.stringify(op)).toBe('succeeded');
    const row = await core.core.database.knex('plugin_packages').where({ plugin_id: 'notes', version: '1.0.0' }).first();
    expect(row.source).toBe(mirror);
  });

  it('restores an installed plugin from storage after a restart, even without its folder', async () => {
    const { rmSync } = await import('node:fs');
    rmSync(path.join(core.dataDir, 'installed', 'notes'), { recursive: true, force: true });
    core = await core.restart();
    expect((await core.client.get('/api/plugins/notes/items')).status).toBe(200);
    await waitOperation(core, (await core.client.post('/api/v1/plugins/notes/uninstall', { keepData: false })).body.operation);
  });
});

describe('versions that cannot go back or cannot start', () => {
  const columnsOf = async (table: string) =>
    (await core.core.database.knex('information_schema.columns').where({ table_schema: 'public', table_name: table }).select('column_name')).map((r: { column_name: string }) => r.column_name).sort();

  it('a rollback past a migration without down() is refused before anything stops', async () => {
    expect((await waitOperation(core, (await core.client.post('/api/v1/plugins/install', { id: 'nodown', version: '1.0.0' })).body.operation)).state).toBe('succeeded');
    expect((await waitOperation(core, (await core.client.post('/api/v1/plugins/nodown/upgrade', {})).body.operation)).state).toBe('succeeded');
    const refused = await waitOperation(core, (await core.client.post('/api/v1/plugins/nodown/rollback', {})).body.operation);
    expect(refused).toMatchObject({ state: 'failed', error: { code: 'plugin_incompatible', message: expect.stringMatching(/cannot undo migration 002_tag .* no down\(\); nothing was changed/) } });
    // Still running, still 2.0.0.
    expect((await core.client.get('/api/plugins/nodown/items')).body.version).toBe('2.0.0');
    expect((await core.client.get('/api/v1/plugins/nodown')).body.state).toBe('enabled');
  });

  it('an older version can still be installed over a newer schema (forward only)', async () => {
    const op = await waitOperation(core, (await core.client.post('/api/v1/plugins/nodown/upgrade', { version: '1.0.0' })).body.operation);
    expect(op, JSON.stringify(op)).toMatchObject({ state: 'succeeded', result: { upgraded: { version: '1.0.0', from: '2.0.0' } } });
    expect((await core.client.get('/api/plugins/nodown/items')).body.version).toBe('1.0.0');
    expect(await columnsOf('p_nodown_items')).toContain('tag');
    await waitOperation(core, (await core.client.post('/api/v1/plugins/nodown/uninstall', { keepData: false })).body.operation);
  });

  it('a new version whose start fails: its migrations are undone and the earlier version runs again', async () => {
    expect((await waitOperation(core, (await core.client.post('/api/v1/plugins/install', { id: 'flaky', version: '1.0.0' })).body.operation)).state).toBe('succeeded');
    const op = await waitOperation(core, (await core.client.post('/api/v1/plugins/flaky/upgrade', {})).body.operation);
    expect(op).toMatchObject({
      state: 'failed',
      error: { code: 'plugin_failed', message: expect.stringMatching(/flaky 2\.0\.0 did not start: start failed: this version cannot start; 1\.0\.0 runs again \(its migrations 002_tag were undone\)/) },
    });
    expect((await core.client.get('/api/plugins/flaky/items')).body.version).toBe('1.0.0');
    expect(await columnsOf('p_flaky_items')).not.toContain('tag');
    expect((await core.core.database.knex('installed_plugins').where({ id: 'flaky' }).first()).version).toBe('1.0.0');
    await waitOperation(core, (await core.client.post('/api/v1/plugins/flaky/uninstall', { keepData: false })).body.operation);
  });
});

describe('refusals leave the core as it was', () => {
  const upload = (bytes: Buffer) => core.client.request('POST', '/api/v1/plugins/upload', { raw: bytes, headers: { 'content-type': 'application/gzip' } });
  const installedIds = async () => (await core.client.get('/api/v1/plugins')).body.items.map((p: any) => p.id).sort();

  it('a package changed after signing is refused, and the refusal is audited', async () => {
    const before = await installedIds();
    const { file } = await notesPackage({ id: 'tampered', version: '1.0.0', key, tamper: true }, mkdtempSync(path.join(work, 't-')));
    const op = await waitOperation(core, (await upload(readFileSync(file))).body.operation);
    expect(op).toMatchObject({ state: 'failed', error: { code: 'package_modified', message: expect.stringMatching(/README\.md does not match its checksum/) } });
    // One byte of the compressed file changed: refused as well.
    const { file: good } = await notesPackage({ id: 'flipped', version: '1.0.0', key }, mkdtempSync(path.join(work, 'f-')));
    const bytes = readFileSync(good);
    const middle = Math.floor(bytes.length / 2);
    bytes[middle] = bytes[middle]! ^ 0xff;
    const flipped = await waitOperation(core, (await upload(bytes)).body.operation);
    expect(flipped.state).toBe('failed');
    expect(['package_invalid', 'package_modified']).toContain(flipped.error.code);
    const refused = await auditRows('core:plugin.install.refused');
    expect(refused.map((r) => r.outcome)).toEqual(expect.arrayContaining(['failure']));
    expect(refused.some((r) => r.resource_id === 'tampered' && JSON.stringify(r.details).includes('package_modified'))).toBe(true);
    expect(await installedIds()).toEqual(before);
    expect(readdirSync(path.join(core.dataDir, 'installed')).filter((n) => !['node_modules', '.incoming'].includes(n))).toEqual([]);
  });

  it('an unsigned package is refused until an administrator allow-lists it', async () => {
    const { file } = await notesPackage({ id: 'homemade', version: '1.0.0' }, mkdtempSync(path.join(work, 'u-')));
    const refused = await waitOperation(core, (await upload(readFileSync(file))).body.operation);
    expect(refused).toMatchObject({ state: 'failed', error: { code: 'package_unsigned', message: expect.stringMatching(/not signed.*allow "homemade" unsigned/) } });
    const allowed = await core.client.post('/api/v1/plugins/unsigned-allowlist', { pluginId: 'homemade', note: 'built in house' });
    expect(allowed.status).toBe(201);
    expect((await core.client.get('/api/v1/plugins/unsigned-allowlist')).body.items).toEqual([expect.objectContaining({ pluginId: 'homemade', note: 'built in house', createdByName: 'admin' })]);
    const op = await waitOperation(core, (await upload(readFileSync(file))).body.operation);
    expect(op, JSON.stringify(op)).toMatchObject({ state: 'succeeded', result: { installed: [{ id: 'homemade', signature: 'unsigned' }] } });
    expect((await core.client.get('/api/plugins/homemade/items')).status).toBe(200);
    await waitOperation(core, (await core.client.post('/api/v1/plugins/homemade/uninstall', { keepData: false })).body.operation);
  });

  it('a package with ../ paths or an absolute symlink is refused and writes nothing outside its folder', async () => {
    const manifest = { name: 'aiplat-plugin.json', content: JSON.stringify({ id: 'evil', version: '1.0.0' }) };
    const escape = await waitOperation(core, (await upload(await hostileTgz([manifest, { name: '../../escaped.txt', content: 'x' }]))).body.operation);
    expect(escape).toMatchObject({ state: 'failed', error: { code: 'package_unsafe' } });
    const link = await waitOperation(core, (await upload(await hostileTgz([manifest, { name: 'evil', type: 'symlink', linkname: '/etc/passwd' }]))).body.operation);
    expect(link).toMatchObject({ state: 'failed', error: { code: 'package_unsafe', message: expect.stringMatching(/symlink to \/etc\/passwd/) } });
    expect(existsSync(path.join(core.dataDir, 'escaped.txt'))).toBe(false);
    expect(existsSync(path.join(core.dataDir, 'installed', 'escaped.txt'))).toBe(false);
    expect(readdirSync(path.join(core.dataDir, 'installed', '.incoming'))).toEqual([]);
    expect((await auditRows('core:plugin.install.refused')).some((r) => JSON.stringify(r.details).includes('package_unsafe'))).toBe(true);
  });

  it('a missing or incompatible dependency fails naming it', async () => {
    const before = await installedIds();
    const missing = await waitOperation(core, (await core.client.post('/api/v1/plugins/install', { id: 'needs-ghost' })).body.operation);
    expect(missing).toMatchObject({ state: 'failed', error: { code: 'plugin_dependency_missing', message: expect.stringMatching(/needs plugin "ghost" \^1\.0\.0/) } });
    const future = await waitOperation(core, (await core.client.post('/api/v1/plugins/install', { id: 'future' })).body.operation);
    expect(future).toMatchObject({ state: 'failed', error: { code: 'version_not_found', message: expect.stringMatching(/works with this core's plugin API 1\.0\.0/) } });
    // hello-shout style: a package needing a newer version of an installed plugin.
    const { file } = await notesPackage({ id: 'needs-new-hello', version: '1.0.0', key, dependencies: { hello: '^7.0.0' } }, mkdtempSync(path.join(work, 'd-')));
    const incompatible = await waitOperation(core, (await upload(readFileSync(file))).body.operation);
    expect(incompatible.state).toBe('failed');
    expect(incompatible.error.message).toMatch(/hello/);
    expect(await installedIds()).toEqual(before);
    expect(await tables('p_needs_')).toEqual([]);
  });

  it('what the workers need travels inside the package: a runtime file it names but lacks is refused', async () => {
    const image = { name: 'local/worker:1', digest: `sha256:${'a'.repeat(64)}`, tarball: 'runtime/images/worker.tar' };
    const runtime = { python: { version: '3.11', wheelhouse: 'runtime/wheels' }, images: [image] };
    const lacking = await notesPackage({ id: 'worker-lacking', version: '1.0.0', key, runtime, files: { 'runtime/wheels/demo-1.0-py3-none-any.whl': 'wheel' } }, mkdtempSync(path.join(work, 'r-')));
    const refused = await waitOperation(core, (await upload(readFileSync(lacking.file))).body.operation);
    expect(refused).toMatchObject({ state: 'failed', error: { code: 'package_invalid', message: expect.stringMatching(/runtime names "runtime\/images\/worker\.tar", which is not in the plugin folder/) } });
    const complete = await notesPackage(
      { id: 'worker-complete', version: '1.0.0', key, runtime, files: { 'runtime/wheels/demo-1.0-py3-none-any.whl': 'wheel', 'runtime/images/worker.tar': 'image tarball' } },
      mkdtempSync(path.join(work, 'r-')),
    );
    const op = await waitOperation(core, (await upload(readFileSync(complete.file))).body.operation);
    expect(op.state, JSON.stringify(op)).toBe('succeeded');
    expect(readFileSync(path.join(core.dataDir, 'installed', 'worker-complete', '1.0.0', 'runtime', 'images', 'worker.tar'), 'utf8')).toBe('image tarball');
    await waitOperation(core, (await core.client.post('/api/v1/plugins/worker-complete/uninstall', { keepData: false })).body.operation);
  });

  it('bad requests get a clear 4xx', async () => {
    expect((await core.client.post('/api/v1/plugins/install', { id: 'Bad Id' })).status).toBe(400);
    expect((await core.client.post('/api/v1/plugins/install', { id: 'notes', version: 'not a range' })).body.error.message).toMatch(/not a semver/);
    expect((await core.client.post('/api/v1/plugins/hello/uninstall', { keepData: true })).body.error.code).toBe('plugin_not_installed');
    expect((await core.client.post('/api/v1/plugins/ghost/rollback', {})).status).toBe(404);
    const viewer = await core.createUser('viewer-1', ['viewer']);
    expect((await viewer.client.post('/api/v1/plugins/install', { id: 'notes' })).status).toBe(403);
  });
});
