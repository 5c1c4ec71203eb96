import { existsSync } from 'node:fs';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { definePlugin, defineWaterfallHook, type PluginManifest } from '@aiplat/plugin-sdk';
import { mockServices, startTestCore } from '../src/index.js';

describe('startTestCore', () => {
  it('boots a real core with only the given plugins and a signed-in client, and cleans up', async () => {
    const core = await startTestCore({ plugins: ['examples/hello'] });
    try {
      const plugins = await core.client.get('/api/v1/plugins');
      expect(plugins.body.items.map((p: { id: string }) => p.id)).toEqual(['hello']);
      expect((await core.client.get('/api/plugins/hello/greeting?name=Kit')).body).toEqual({ greeting: 'Hello, Kit' });
      expect((await core.client.anonymous().get('/api/plugins/hello/greeting?name=Kit')).status).toBe(401);
      expect(core.logs.some((l) => l.msg === 'aiplat core listening')).toBe(true);
      expect(core.core.database.kind).toBe(process.env.AIPLAT_TEST_DATABASE === 'postgres' ? 'postgres' : 'embedded');
    } finally {
      await core.stop();
    }
    await expect(fetch(`${core.url}/api/v1/health`)).rejects.toThrow();
    expect(existsSync(core.dataDir)).toBe(false);
  });

  it('keeps the data over a restart, and the restarted core cleans up what the first one made', async () => {
    const first = await startTestCore();
    const created = await first.client.post('/api/v1/teams', { name: 'kept' });
    expect(created.status).toBe(201);
    const second = await first.restart();
    try {
      expect(second.dataDir).toBe(first.dataDir);
      expect((await second.client.get('/api/v1/teams')).body.items.map((t: { name: string }) => t.name)).toContain('kept');
    } finally {
      await second.stop();
    }
    expect(existsSync(first.dataDir)).toBe(false);
    if (second.databaseUrl) {
      const client = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
      await client.connect();
      const { rows } = await client.query('select 1 from pg_database where datname = $1', [new URL(second.databaseUrl).pathname.slice(1)]);
      await client.end();
      expect(rows).toEqual([]);
    }
  });
});

describe('mockServices', () => {
  it('runs a plugin against mock services without a core', async () => {
    const shout = defineWaterfallHook<string>('kit.text');
    const hooks = mockServices.hooks();
    hooks.declareHook(shout, 'kit');
    hooks.tap(shout, 'other', (text) => text.toUpperCase());
    const manifest: PluginManifest = { id: 'kit', version: '1.0.0', displayName: { en: 'Kit', 'zh-CN': '工具' }, engines: { aiplat: '^1.0.0' } };
    const seen: string[] = [];
    const plugin = definePlugin<{ word: string }>({
      register: () => undefined,
      async start(ctx) {
        seen.push(await ctx.hooks.call(shout, ctx.config.word));
        ctx.logger.info({ word: ctx.config.word }, 'started');
      },
    });
    const ctx = mockServices.pluginContext({ manifest, config: { word: 'quiet' }, hooks });
    await plugin.start!(ctx);
    expect(seen).toEqual(['QUIET']);
    expect(ctx.logger.entries).toEqual([{ level: 'info', obj: { word: 'quiet' }, msg: 'started' }]);
    expect(() => ctx.db).toThrow('mockServices.pluginContext has no database');
  });
});
