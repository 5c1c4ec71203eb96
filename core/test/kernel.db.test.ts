import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';

const FIXTURES = 'core/test/fixtures/plugins';

describe('plugin kernel with broken plugins beside good ones', () => {
  let core: TestCore;
  const status = async (id: string) => (await core.client.get(`/api/v1/plugins/${id}`)).body;

  beforeAll(async () => {
    core = await startTestCore({ plugins: ['examples', FIXTURES] });
  });
  afterAll(() => core?.stop());

  it('keeps hello working', async () => {
    const res = await core.client.get('/api/plugins/hello/greeting?name=Ada');
    expect(res.status).toBe(200);
    // optional-tapper taps at stage -1, before hello-shout upper-cases
    expect(res.body).toEqual({ greeting: 'HELLO, ADA (SEEN BY OPTIONAL-TAPPER)' });
  });

  it('treats a tap on an absent optional dependency as a no-op', async () => {
    expect(await status('optional-tapper')).toMatchObject({ state: 'enabled', optionalDependencies: ['not-installed-either', 'hello'] });
  });

  it('fails a bad manifest naming the file and the fields', async () => {
    const s = await status('bad-manifest');
    expect(s.state).toBe('failed');
    expect(s.reason).toContain('bad-manifest/aiplat-plugin.json is not a valid plugin manifest');
    expect(s.reason).toContain('version: must be a semver version such as 1.2.3');
    expect(s.reason).toContain('displayName: "zh-CN" is required');
    expect(s.reason).toContain('(top level): unknown field "colour"');
  });

  it('fails a plugin with a missing dependency, naming it', async () => {
    const s = await status('needs-missing');
    expect(s).toMatchObject({ state: 'failed', reason: 'missing dependency "not-installed" (needs ^1.0.0)' });
  });

  it('fails both members of a cycle, naming the cycle', async () => {
    expect(await status('cycle-a')).toMatchObject({ state: 'failed', reason: 'dependency cycle: cycle-a → cycle-b → cycle-a' });
    expect(await status('cycle-b')).toMatchObject({ state: 'failed', reason: 'dependency cycle: cycle-a → cycle-b → cycle-a' });
  });

  it('fails an incompatible engines range, naming the range and the API version', async () => {
    const s = await status('future-api');
    expect(s.state).toBe('failed');
    expect(s.reason).toContain('engines.aiplat "^2.0.0" does not accept this core\'s plugin API 1.0.0');
  });

  it('fails a plugin that throws in start, with its message, and its dependents', async () => {
    expect(await status('throws-on-start')).toMatchObject({ state: 'failed', reason: 'start failed: the model store at /nowhere is unreachable' });
    expect(await status('depends-on-thrower')).toMatchObject({ state: 'failed', reason: 'depends on failed plugin "throws-on-start"' });
    const res = await core.client.get('/api/plugins/throws-on-start/ping');
    expect(res.status).toBe(404);
  });

  it('refuses a route that does not say who may call it', async () => {
    const s = await status('route-without-auth');
    expect(s.state).toBe('failed');
    expect(s.reason).toContain('route GET /open: must declare exactly one of permission, public: { reason } or custom: { reason }');
  });

  it('refuses a permission another plugin already declares', async () => {
    const s = await status('permission-thief');
    expect(s).toMatchObject({ state: 'failed' });
    expect(s.reason).toContain('permission "greetings:read" is already declared by hello');
  });

  it('refuses migrations that create tables outside the plugin prefix', async () => {
    const s = await status('stray-table');
    expect(s.state).toBe('failed');
    expect(s.reason).toContain('without the prefix "p_stray_table_": greetings');
  });

  it('lists every plugin with state, dependencies and dependents', async () => {
    const res = await core.client.get('/api/v1/plugins');
    expect(res.status).toBe(200);
    const hello = res.body.items.find((p: { id: string }) => p.id === 'hello');
    expect(hello).toMatchObject({ state: 'enabled', version: '1.0.0', dependents: ['hello-shout'] });
    const states = Object.fromEntries(res.body.items.map((p: { id: string; state: string }) => [p.id, p.state]));
    expect(states).toMatchObject({ hello: 'enabled', 'hello-shout': 'enabled', probe: 'enabled', 'cycle-a': 'failed', 'bad-manifest': 'failed' });
    const failedOnly = await core.client.get('/api/v1/plugins?state=failed');
    expect(failedOnly.body.items.every((p: { state: string }) => p.state === 'failed')).toBe(true);
  });

  it('retries start on enable and answers 409 with the reason when it fails again', async () => {
    const res = await core.client.post('/api/v1/plugins/throws-on-start/enable');
    expect(res.status).toBe(409);
    expect(res.body.error).toMatchObject({
      code: 'plugin_failed',
      message: 'Plugin throws-on-start did not start: start failed: the model store at /nowhere is unreachable',
    });
  });

  it('takes only folders holding a manifest for plugins', async () => {
    const ids = (await core.client.get('/api/v1/plugins')).body.items.map((p: { id: string }) => p.id);
    expect(ids).not.toContain('README.md');
    expect(ids).toHaveLength(16);
  });

  it('refuses to enable a plugin whose files are broken', async () => {
    const res = await core.client.post('/api/v1/plugins/future-api/enable');
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('plugin_failed');
  });

  it('answers 404 for unknown plugins', async () => {
    expect((await core.client.get('/api/v1/plugins/nope')).body.error.code).toBe('plugin_not_found');
    expect((await core.client.post('/api/v1/plugins/nope/disable')).status).toBe(404);
    const routed = await core.client.get('/api/plugins/nope/anything');
    expect(routed.status).toBe(404);
    expect(routed.body.error.code).toBe('plugin_not_found');
  });

  it('mounts an alias only when unclaimed, and says why not otherwise', async () => {
    const rival = await core.client.anonymous().get('/v9/items');
    expect(rival.body).toEqual({ rival: true });
    const probe = await status('probe');
    expect(probe.state).toBe('enabled');
    expect(probe.reason).toContain('alias /v9 is already claimed by alias-rival');
    expect(probe.reason).toContain('alias /api is reserved by the core');
    expect((await status('alias-rival')).aliases).toEqual(['/v9']);
  });
});
