import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';

describe('examples/hello with hello-shout', () => {
  let core: TestCore;
  beforeAll(async () => {
    core = await startTestCore({ plugins: ['examples'] });
  });
  afterAll(() => core?.stop());

  it('greets, upper-cased while hello-shout is enabled', async () => {
    expect((await core.client.get('/api/plugins/hello/greeting?name=Ada')).body).toEqual({ greeting: 'HELLO, ADA' });
    expect((await core.client.get(`/api/plugins/hello/greeting?name=${encodeURIComponent('李雷')}`)).body).toEqual({ greeting: 'HELLO, 李雷' });
  });

  it('counts greetings per name in its own table', async () => {
    expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Ada' })).body).toEqual({ greeting: 'HELLO, ADA', count: 1 });
    expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Ada' })).body).toEqual({ greeting: 'HELLO, ADA', count: 2 });
    expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Bob' })).body.count).toBe(1);
    const rows = await core.core.database.knex('p_hello_counters').orderBy('name').select('name', 'count');
    expect(rows).toEqual([
      { name: 'Ada', count: 2 },
      { name: 'Bob', count: 1 },
    ]);
  });

  it('accepts exactly 64 characters and refuses 65', async () => {
    expect((await core.client.get(`/api/plugins/hello/greeting?name=${'x'.repeat(64)}`)).status).toBe(200);
    const res = await core.client.post('/api/plugins/hello/greetings', { name: 'x'.repeat(65) });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toBe('Invalid request body: name: must be at most 64 characters long');
  });
});
