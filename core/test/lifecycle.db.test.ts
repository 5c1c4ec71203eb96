import { afterEach, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';

async function until<T>(fn: () => Promise<T>, ok: (value: T) => boolean, ms: number): Promise<{ value: T; elapsed: number }> {
  const started = Date.now();
  for (;;) {
    const value = await fn();
    if (ok(value)) return { value, elapsed: Date.now() - started };
    if (Date.now() - started > ms) throw new Error(`condition not met within ${ms} ms; last value: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('enable and disable at run time', () => {
  let core: TestCore | undefined;
  afterEach(async () => {
    await core?.stop();
    core = undefined;
  });

  const greeting = () => core!.client.get('/api/plugins/hello/greeting?name=Ada');
  const states = async () =>
    Object.fromEntries(((await core!.client.get('/api/v1/plugins')).body.items as { id: string; state: string }[]).map((p) => [p.id, p.state]));

  it('refuses to disable hello while hello-shout depends on it, then disables in order; state survives a restart', async () => {
    core = await startTestCore({ plugins: ['examples'] });
    const refused = await core.client.post('/api/v1/plugins/hello/disable');
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: 'plugin_has_dependents', details: { id: 'hello', dependents: ['hello-shout'] } });
    expect(refused.body.error.message).toContain('hello-shout');
    expect((await greeting()).body).toEqual({ greeting: 'HELLO, ADA' });

    const shout = await core.client.post('/api/v1/plugins/hello-shout/disable');
    expect(shout.status).toBe(200);
    expect(shout.body.items[0]).toMatchObject({ id: 'hello-shout', state: 'disabled' });
    // hello-shout's tap stops at once: tapable cannot untap, the guard does
    expect((await greeting()).body).toEqual({ greeting: 'Hello, Ada' });

    const hello = await core.client.post('/api/v1/plugins/hello/disable');
    expect(hello.status).toBe(200);
    const gone = await until(greeting, (r) => r.status === 404, 1000);
    expect(gone.elapsed).toBeLessThan(1000);
    expect(gone.value.body.error.message).toBe('Plugin "hello" is disabled');

    const audit = await core.core.database.knex('audit_log').whereLike('action', 'core:POST /plugins/%').orderBy('id').select('action', 'status');
    expect(audit).toEqual([
      { action: 'core:POST /plugins/:id/disable', status: 200 },
      { action: 'core:POST /plugins/:id/disable', status: 200 },
    ]);

    core = await core.restart();
    expect(await states()).toEqual({ hello: 'disabled', 'hello-shout': 'disabled' });
    expect((await greeting()).status).toBe(404);

    const enabled = await core.client.post('/api/v1/plugins/hello/enable');
    expect(enabled.status).toBe(200);
    expect((await greeting()).body).toEqual({ greeting: 'Hello, Ada' });
    const needsHello = await core.client.post('/api/v1/plugins/hello-shout/enable');
    expect(needsHello.status).toBe(200);
    expect((await greeting()).body).toEqual({ greeting: 'HELLO, ADA' });

    core = await core.restart();
    expect(await states()).toEqual({ hello: 'enabled', 'hello-shout': 'enabled' });
  });

  it('disables dependents and the plugin at once with cascade, and enables dependencies with cascade', async () => {
    core = await startTestCore({ plugins: ['examples'] });
    const res = await core.client.post('/api/v1/plugins/hello/disable?cascade=true');
    expect(res.status).toBe(200);
    expect(res.body.changed).toEqual(['hello-shout', 'hello']);
    expect(await states()).toEqual({ hello: 'disabled', 'hello-shout': 'disabled' });
    expect((await greeting()).status).toBe(404);

    const refused = await core.client.post('/api/v1/plugins/hello-shout/enable');
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: 'plugin_dependencies_disabled', details: { dependencies: ['hello'] } });
    const cascade = await core.client.post('/api/v1/plugins/hello-shout/enable?cascade=true');
    expect(cascade.body.changed).toEqual(['hello', 'hello-shout']);
    expect((await greeting()).body).toEqual({ greeting: 'HELLO, ADA' });
  });

  it('keeps the greeting counter across restarts and uses the configured greeting word', async () => {
    core = await startTestCore({ plugins: ['examples/hello'] });
    expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Grace' })).body).toEqual({ greeting: 'Hello, Grace', count: 1 });
    expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Grace' })).body.count).toBe(2);
    await core.core.database.knex('plugin_states').where({ id: 'hello' }).update({ config: JSON.stringify({ greetingWord: 'Bonjour' }) });
    core = await core.restart();
    expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Grace' })).body).toEqual({ greeting: 'Bonjour, Grace', count: 3 });
  });

  it('fails a plugin whose stored settings do not match its schema, naming the field', async () => {
    core = await startTestCore({ plugins: ['examples/hello'] });
    await core.core.database.knex('plugin_states').where({ id: 'hello' }).update({ config: JSON.stringify({ greetingWord: '' }) });
    core = await core.restart();
    const status = (await core.client.get('/api/v1/plugins/hello')).body;
    expect(status.state).toBe('failed');
    expect(status.reason).toBe('start failed: its settings do not match its config schema: greetingWord: must be at least 1 character long');
  });
});
