// The web shell and plugin UI remotes as the core serves them: GET /api/v1/ui/remotes, the
// /_remotes/<id>/ static files of enabled plugins, the shell's build with its SPA fallback and
// <base href> for PUBLIC_URL, and the manifest checks on web contributions.
import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StreamEvent } from '@aiplat/plugin-sdk';
import { startTestCore, type TestClient, type TestCore } from '@aiplat/testing';

const FIXTURES = 'core/test/fixtures/ui-plugins';
const SHELL = path.resolve('core/test/fixtures/web-shell-build');

/** A GET without the automatic decompression of fetch: status, headers and the raw bytes. */
function rawGet(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

describe('web shell and UI remotes', () => {
  let core: TestCore;
  let viewer: TestClient;

  beforeAll(async () => {
    core = await startTestCore({ plugins: [FIXTURES, 'examples'], config: { webDir: SHELL } });
    viewer = (await core.createUser('vera', ['viewer'])).client;
  });
  afterAll(() => core?.stop());

  it('refuses web manifests with a duplicate contribution id, a page without a route, or a remote outside the plugin folder', async () => {
    const plugins = (await core.client.get('/api/v1/plugins')).body.items as { id: string; state: string; reason?: string }[];
    const byId = Object.fromEntries(plugins.map((p) => [p.id, p]));
    expect(byId['ui-good']!.state).toBe('enabled');
    expect(byId['ui-dup-ids']!.state).toBe('failed');
    expect(byId['ui-dup-ids']!.reason).toContain('web.contributions: id "same" is used twice');
    expect(byId['ui-no-route']!.state).toBe('failed');
    expect(byId['ui-no-route']!.reason).toMatch(/web\.contributions\.0: "route" is required/);
    expect(byId['ui-outside']!.state).toBe('failed');
    expect(byId['ui-outside']!.reason).toContain('web.remoteEntry "../ui-good/web/build/remoteEntry.js" points outside the plugin folder');
  });

  it('lists the enabled remotes with their contributions, ordered, for an admin', async () => {
    const res = await core.client.get('/api/v1/ui/remotes');
    expect(res.status).toBe(200);
    const ids = res.body.items.map((r: { pluginId: string }) => r.pluginId);
    expect(ids).toContain('ui-good');
    expect(ids).not.toContain('ui-dup-ids');
    const good = res.body.items.find((r: { pluginId: string }) => r.pluginId === 'ui-good');
    expect(good).toMatchObject({
      version: '1.2.3',
      name: 'aiplat_ui_good',
      entry: '/_remotes/ui-good/remoteEntry.js?v=1.2.3',
      displayName: { en: 'UI fixture', 'zh-CN': '界面测试插件' },
    });
    expect(good.contributions.map((c: { id: string }) => c.id)).toEqual(['good-nav', 'good-tab', 'good-page', 'secret-widget']);
  });

  it("shows a user only the contributions their permissions allow, and nothing to the signed-out", async () => {
    const res = await viewer.get('/api/v1/ui/remotes');
    const good = res.body.items.find((r: { pluginId: string }) => r.pluginId === 'ui-good');
    expect(good.contributions.map((c: { id: string }) => c.id)).toEqual(['good-nav', 'good-tab', 'good-page']);
    expect((await core.client.anonymous().get('/api/v1/ui/remotes')).status).toBe(401);
  });

  it("tells the signed-in user which permissions they hold", async () => {
    const me = (await viewer.get('/api/v1/auth/me')).body;
    expect(me.roles).toEqual(['viewer']);
    expect(me.permissions).toContain('good:read');
    expect(me.permissions).toContain('plugins:read');
    expect(me.permissions).not.toContain('good:secret');
    expect(me.permissions).not.toContain('plugins:manage');
    const admin = (await core.client.get('/api/v1/auth/me')).body;
    expect(admin.permissions).toEqual(expect.arrayContaining(['good:read', 'good:secret', 'plugins:manage', 'greetings:write']));
  });

  it('serves a remote: the entry revalidated on every load, hashed assets cached for a year and sent precompressed', async () => {
    const entry = await rawGet(`${core.url}/_remotes/ui-good/remoteEntry.js?v=1.2.3`);
    expect(entry.status).toBe(200);
    expect(entry.headers['content-type']).toMatch(/javascript/);
    expect(entry.headers['cache-control']).toBe('no-cache');
    expect(entry.body.toString()).toContain('export const get');

    const asset = await rawGet(`${core.url}/_remotes/ui-good/assets/chunk-abc123.js`, { 'accept-encoding': 'gzip' });
    expect(asset.status).toBe(200);
    expect(asset.headers['cache-control']).toBe('max-age=31536000,immutable');
    expect(asset.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(asset.body).toString()).toMatch(/^export const chunk = 'x{4000}';/);
    const plain = await rawGet(`${core.url}/_remotes/ui-good/assets/chunk-abc123.js`);
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body.length).toBeGreaterThan(4000);

    const again = await rawGet(`${core.url}/_remotes/ui-good/remoteEntry.js`, { 'if-modified-since': String(entry.headers['last-modified']) });
    expect(again.status).toBe(304);
  });

  it('answers 404 with the error body for unknown plugins, missing files, plugins without a UI and paths out of the folder', async () => {
    for (const url of [
      '/_remotes/nope/remoteEntry.js',
      '/_remotes/ui-good/missing.js',
      '/_remotes/ui-good/',
      '/_remotes/hello-shout/remoteEntry.js',
      '/_remotes/ui-good/%2e%2e/aiplat-plugin.json',
      '/_remotes/ui-good/..%2f..%2faiplat-plugin.json',
      '/_remotes/ui-dup-ids/remoteEntry.js',
    ]) {
      const res = await core.client.anonymous().get(url);
      expect(res.status, url).toBe(404);
      expect(res.body.error.code, url).toBe('not_found');
    }
  });

  it('stops serving a disabled plugin’s remote at once, tells every client on the ui topic, and serves it again when enabled', async () => {
    const events: StreamEvent[] = [];
    const subscription = core.core.events.subscribe('ui', (event) => events.push(event));
    try {
      expect((await core.client.post('/api/v1/plugins/ui-good/disable')).status).toBe(200);
      expect((await rawGet(`${core.url}/_remotes/ui-good/remoteEntry.js`)).status).toBe(404);
      const ids = (await core.client.get('/api/v1/ui/remotes')).body.items.map((r: { pluginId: string }) => r.pluginId);
      expect(ids).not.toContain('ui-good');
      expect((await core.client.post('/api/v1/plugins/ui-good/enable')).status).toBe(200);
      expect((await rawGet(`${core.url}/_remotes/ui-good/remoteEntry.js`)).status).toBe(200);
      for (let i = 0; i < 100 && events.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      expect(events.map((e) => e.payload)).toEqual([
        { pluginId: 'ui-good', state: 'disabled' },
        { pluginId: 'ui-good', state: 'enabled' },
      ]);
      // A plugin without a UI changes no navigation: no ui event for it.
      expect((await core.client.post('/api/v1/plugins/hello-shout/disable')).status).toBe(200);
      expect((await core.client.post('/api/v1/plugins/hello-shout/enable')).status).toBe(200);
      await new Promise((r) => setTimeout(r, 100));
      expect(events.some((e) => (e.payload as { pluginId: string }).pluginId === 'hello-shout')).toBe(false);
    } finally {
      subscription.unsubscribe();
    }
  });

  it('serves the shell: index.html with its <base href> and boot settings for every shell route, assets cached, API paths never', async () => {
    for (const url of ['/', '/plugins/hello', '/hello', '/index.html']) {
      const res = await rawGet(`${core.url}${url}`);
      expect(res.status, url).toBe(200);
      expect(res.headers['content-type'], url).toMatch(/text\/html/);
      expect(res.headers['cache-control'], url).toBe('no-cache');
      const html = res.body.toString();
      expect(html).toContain('<base href="/" />');
      expect(html).toContain('window.__AIPLAT__ = {"basePath":"","version":"0.1.0"};');
      expect(html).toContain('./assets/app-123.js');
    }
    const asset = await rawGet(`${core.url}/assets/app-123.js`);
    expect(asset.status).toBe(200);
    expect(asset.headers['cache-control']).toBe('max-age=31536000,immutable');
    for (const url of ['/assets/missing-1.js', '/api/v1/nope', '/api/plugins/nope/x', '/favicon.ico']) {
      const res = await core.client.anonymous().get(url);
      expect(res.status, url).toBe(404);
      expect(res.body.error.code, url).toMatch(/not_found$/);
    }
    // Only GET and HEAD reach the shell.
    const post = await core.client.anonymous().post('/plugins', {});
    expect(post.status).toBe(404);
    expect(post.headers.get('content-type')).toMatch(/json/);
  });
});

describe('web shell under a base path and without a build', () => {
  it('writes the base path into index.html and the remote entries when PUBLIC_URL has a path', async () => {
    const core = await startTestCore({ plugins: [FIXTURES], config: { webDir: SHELL, publicUrl: 'https://example.com/aiplat/' } });
    try {
      const html = (await rawGet(`${core.url}/aiplat/hello`)).body.toString();
      expect(html).toContain('<base href="/aiplat/" />');
      expect(html).toContain('"basePath":"/aiplat"');
      const remotes = (await core.client.get('/aiplat/api/v1/ui/remotes')).body.items;
      expect(remotes.find((r: { pluginId: string }) => r.pluginId === 'ui-good').entry).toBe('/aiplat/_remotes/ui-good/remoteEntry.js?v=1.2.3');
      expect((await rawGet(`${core.url}/aiplat/_remotes/ui-good/remoteEntry.js`)).status).toBe(200);
      // A proxy that strips the prefix works too.
      expect((await rawGet(`${core.url}/_remotes/ui-good/remoteEntry.js`)).status).toBe(200);
    } finally {
      await core.stop();
    }
  });

  it('explains how to build the shell when it is not built, while the API works', async () => {
    const core = await startTestCore({ plugins: [], config: { webDir: path.join(SHELL, 'not-here') } });
    try {
      const res = await rawGet(`${core.url}/`);
      expect(res.status).toBe(503);
      expect(res.body.toString()).toContain('npm run build:ui');
      expect((await core.client.get('/api/v1/health')).status).toBe(200);
    } finally {
      await core.stop();
    }
  });
});
