import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';

const PLUGINS = ['examples', 'core/test/fixtures/settings-plugins'];
const MASTER_KEY = 'settings-test-master-key-0123456789-abcdef';
/** Recognisable plaintexts: none of them may ever show outside the plugin that uses them. */
const API_KEY = 'sk-live-CANARY-7f3a9c1e55d04b2b';
const SMTP_PASSWORD = 'smtp-CANARY-pass-99e1d';
const CANARIES = [API_KEY, SMTP_PASSWORD];

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    return statSync(file).isDirectory() ? filesUnder(file) : [file];
  });
}

/** The files of the data folder that contain `needle`, compared byte-wise. */
function filesContaining(dir: string, needle: string): string[] {
  const bytes = Buffer.from(needle, 'utf8');
  return filesUnder(dir).filter((file) => readFileSync(file).includes(bytes));
}

describe('plugin settings API with secrets', () => {
  let core: TestCore;
  const config = () => core.client.get('/api/v1/plugins/secret-probe/config');
  const put = (id: string, body: unknown) => core.client.put(`/api/v1/plugins/${id}/config`, body);
  const seen = async () => (await core.client.get('/api/plugins/secret-probe/seen')).body;

  beforeAll(async () => {
    core = await startTestCore({ plugins: PLUGINS, config: { secretKey: MASTER_KEY } });
  });
  afterAll(() => core?.stop());

  it('shows the schema, the defaults and which secrets are set', async () => {
    const res = await config();
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      values: { endpoint: 'https://api.example.com/v1', retries: 3 },
      secrets: { apiKey: { set: false }, 'smtp.password': { set: false } },
      schema: core.core.kernel.manifestOf('secret-probe')!.config,
    });
    const unknown = await core.client.get('/api/v1/plugins/no-such-plugin/config');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('plugin_not_found');
    expect((await core.client.anonymous().get('/api/v1/plugins/secret-probe/config')).status).toBe(401);
  });

  it('stores secrets write-only: the answer and later reads show "••••", the plugin sees the plaintext at once', async () => {
    const res = await put('secret-probe', { apiKey: API_KEY, retries: 5, smtp: { host: 'mail.example.com', password: SMTP_PASSWORD } });
    expect(res.status).toBe(200);
    expect(res.body.values).toEqual({ endpoint: 'https://api.example.com/v1', apiKey: '••••', retries: 5, smtp: { host: 'mail.example.com', password: '••••' } });
    expect(res.body.secrets).toEqual({ apiKey: { set: true }, 'smtp.password': { set: true } });
    const read = await config();
    expect(read.body.values).toEqual(res.body.values);
    for (const canary of CANARIES) {
      expect(res.text).not.toContain(canary);
      expect(read.text).not.toContain(canary);
    }

    // configChanged ran with the new settings; no restart happened.
    const probe = await seen();
    expect(probe.config).toEqual({ endpoint: 'https://api.example.com/v1', apiKey: API_KEY, retries: 5, smtp: { host: 'mail.example.com', password: SMTP_PASSWORD } });
    expect(probe.changes.at(-1)).toEqual(probe.config);
    expect(probe).toMatchObject({ starts: 1, stops: 0 });
    expect(core.core.kernel.status('secret-probe').state).toBe('enabled');
  });

  it('keeps a secret given as "••••" or left out, and clears it with null', async () => {
    const kept = await put('secret-probe', { apiKey: '••••', retries: 6, smtp: { host: 'mail2.example.com' } });
    expect(kept.status).toBe(200);
    expect(kept.body.secrets).toEqual({ apiKey: { set: true }, 'smtp.password': { set: true } });
    expect((await seen()).config).toMatchObject({ apiKey: API_KEY, retries: 6, smtp: { host: 'mail2.example.com', password: SMTP_PASSWORD } });

    const cleared = await put('secret-probe', { apiKey: null, smtp: { host: 'mail2.example.com', password: '••••' } });
    expect(cleared.status).toBe(200);
    expect(cleared.body.values).toEqual({ endpoint: 'https://api.example.com/v1', retries: 3, smtp: { host: 'mail2.example.com', password: '••••' } });
    expect(cleared.body.secrets).toEqual({ apiKey: { set: false }, 'smtp.password': { set: true } });
    const probe = await seen();
    expect(probe.config.apiKey).toBeUndefined();
    expect(probe.config.smtp.password).toBe(SMTP_PASSWORD);

    expect((await put('secret-probe', { apiKey: API_KEY, smtp: { host: 'mail.example.com' } })).status).toBe(200);
    expect((await seen()).config).toMatchObject({ apiKey: API_KEY, smtp: { password: SMTP_PASSWORD } });
  });

  it('refuses settings that do not match the schema with a 400 naming the field, and changes nothing', async () => {
    const before = await seen();
    const cases: [unknown, string][] = [
      [{ retries: 'many' }, 'Invalid settings: retries: must be integer'],
      [{ retrys: 3 }, 'Invalid settings: retrys: unknown field "retrys"'],
      [{ smtp: { host: 'x', port: 25 } }, 'Invalid settings: smtp.port: unknown field "port"'],
      [{ retries: 11 }, 'Invalid settings: retries: must be <= 10'],
      [{ endpoint: 'not a url' }, 'Invalid settings: endpoint: must match format "uri"'],
      [{ apiKey: 'tiny77' }, 'Invalid settings: apiKey: must be at least 8 characters long'],
      [{ apiKey: 12345678 }, 'Invalid settings: apiKey: must be string'],
    ];
    for (const [body, message] of cases) {
      const res = await put('secret-probe', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
      expect(res.body.error.message).toBe(message);
    }
    // A rejected secret is not echoed either.
    expect((await put('secret-probe', { apiKey: 'tiny77' })).text).not.toContain('tiny77');
    const notObject = await put('secret-probe', ['apiKey']);
    expect(notObject.status).toBe(400);
    const unknown = await put('no-such-plugin', {});
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('plugin_not_found');
    expect(await seen()).toEqual(before);
  });

  it('redacts the plaintext from logs, error bodies and audit details', async () => {
    expect((await core.client.get('/api/plugins/secret-probe/leak/log')).status).toBe(200);
    const error = await core.client.get('/api/plugins/secret-probe/leak/error');
    expect(error.status).toBe(400);
    expect(error.body.error.message).toBe('upstream refused the key ••••');
    expect(error.body.error.details).toEqual({ tried: '••••', apiKey: '••••' });
    expect((await core.client.get('/api/plugins/secret-probe/leak/crash')).status).toBe(500);
    expect((await core.client.post('/api/plugins/secret-probe/leak/audit', {})).status).toBe(200);

    const logs = JSON.stringify(core.logs);
    for (const canary of CANARIES) expect(logs).not.toContain(canary);
    expect(logs).not.toContain('hunter2-field-name');
    const leakLine = core.logs.find((l) => l.msg === 'key in message: ••••');
    expect(leakLine).toMatchObject({ note: 'calling upstream with ••••', nested: { header: 'Bearer ••••' }, password: '••••' });
    const crash = core.logs.find((l) => l.msg === 'request failed' && JSON.stringify(l).includes('crashed while using'));
    expect(JSON.stringify(crash)).toContain('crashed while using ••••');

    const audit = (await core.core.database.knex('audit_log').orderBy('id').select('action', 'details')) as { action: string; details: Record<string, unknown> }[];
    const auditText = JSON.stringify(audit);
    for (const canary of CANARIES) expect(auditText).not.toContain(canary);
    expect(auditText).not.toContain('plain-token-value');
    expect(audit.find((r) => r.action === 'secret-probe:call')?.details).toEqual({ used: 'key ••••', token: '••••' });
    const settingsRows = audit.filter((r) => r.action === 'core:PUT /plugins/:id/config');
    expect(settingsRows.length).toBeGreaterThanOrEqual(4);
    expect(settingsRows[0]!.details).toMatchObject({
      plugin: 'secret-probe',
      changed: ['apiKey', 'retries', 'smtp'],
      secretsSet: ['apiKey', 'smtp.password'],
      secretsCleared: [],
      values: { apiKey: '••••', retries: 5, smtp: { host: 'mail.example.com', password: '••••' } },
    });
  });

  it('never writes a plaintext into the database or the data folder', async () => {
    const knex = core.core.database.knex;
    const stored = (await knex('plugin_states').where({ id: 'secret-probe' }).first('config')) as { config: Record<string, any> };
    expect(stored.config.apiKey.$secret).toMatch(/^v1:[0-9a-f]{8}:[\w-]+:[\w-]+:[\w-]+$/);
    expect(stored.config.smtp).toEqual({ host: 'mail.example.com', password: { $secret: expect.stringMatching(/^v1:/) } });
    for (const table of ['plugin_states', 'settings', 'audit_log']) {
      const text = JSON.stringify(await knex(table).select());
      for (const canary of CANARIES) expect(text, table).not.toContain(canary);
    }

    // Stop (so every page reaches the disk), search every file byte-wise, start again.
    await core.stop({ keep: true });
    if (!core.databaseUrl) expect(filesContaining(core.dataDir, 'mail.example.com').length, 'the search finds stored plaintext').toBeGreaterThan(0);
    for (const canary of CANARIES) expect(filesContaining(core.dataDir, canary)).toEqual([]);
    core = await core.restart();
    expect((await seen()).config).toMatchObject({ apiKey: API_KEY, smtp: { password: SMTP_PASSWORD } });
    expect((await config()).body.secrets).toEqual({ apiKey: { set: true }, 'smtp.password': { set: true } });
  });

  it('restarts a plugin without configChanged alone: its dependents keep running', async () => {
    const before = (await core.client.get('/api/plugins/restart-probe/seen')).body;
    expect(before).toMatchObject({ starts: 1, stops: 0, config: { mode: 'calm' } });
    const res = await put('restart-probe', { mode: 'busy', token: 'restart-probe-token-1' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ values: { mode: 'busy', token: '••••' }, secrets: { token: { set: true } } });
    const after = (await core.client.get('/api/plugins/restart-probe/seen')).body;
    expect(after).toMatchObject({ starts: 2, stops: 1, config: { mode: 'busy', token: 'restart-probe-token-1' } });
    expect(after.startedWith.at(-1)).toEqual({ mode: 'busy', token: 'restart-probe-token-1' });
    expect((await core.client.get('/api/plugins/restart-dependent/seen')).body).toEqual({ starts: 1, stops: 0 });
    expect(core.core.kernel.status('restart-probe').state).toBe('enabled');
    expect(core.core.kernel.status('restart-dependent').state).toBe('enabled');

    const refused = await put('restart-probe', { mode: 'frantic' });
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toBe('Invalid settings: mode: must be one of "calm", "busy"');
    expect((await core.client.get('/api/plugins/restart-probe/seen')).body.starts).toBe(2);
  });

  it("changes examples/hello's greetingWord for the next request, without restarting the core", async () => {
    const greeting = async () => (await core.client.get('/api/plugins/hello/greeting?name=Ada')).body;
    expect(await greeting()).toEqual({ greeting: 'HELLO, ADA' });
    const res = await put('hello', { greetingWord: 'Howdy' });
    expect(res.status).toBe(200);
    expect(res.body.values).toEqual({ greetingWord: 'Howdy' });
    expect(await greeting()).toEqual({ greeting: 'HOWDY, ADA' });
    expect(core.core.kernel.status('hello-shout').state).toBe('enabled');
    // Back to the default by leaving the field out.
    expect((await put('hello', {})).body.values).toEqual({ greetingWord: 'Hello' });
    expect(await greeting()).toEqual({ greeting: 'HELLO, ADA' });
    const tooLong = await put('hello', { greetingWord: 'x'.repeat(33) });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error.message).toBe('Invalid settings: greetingWord: must be at most 32 characters long');
  });
});

describe('plugin settings without AIPLAT_SECRET_KEY', () => {
  let core: TestCore;
  beforeAll(async () => {
    core = await startTestCore({ plugins: PLUGINS, config: { secretKey: undefined } });
  });
  afterAll(() => core?.stop());

  it('starts, stores plain settings, and refuses a secret with a 409 that says to set AIPLAT_SECRET_KEY', async () => {
    const res = await core.client.put('/api/v1/plugins/secret-probe/config', { apiKey: API_KEY, retries: 2 });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('secret_key_missing');
    expect(res.body.error.message).toContain('the server has no AIPLAT_SECRET_KEY. Set AIPLAT_SECRET_KEY');
    expect(res.body.error.details).toEqual({ plugin: 'secret-probe', fields: ['apiKey'] });
    expect(res.text).not.toContain(API_KEY);

    const plain = await core.client.put('/api/v1/plugins/secret-probe/config', { retries: 2 });
    expect(plain.status).toBe(200);
    expect(plain.body.secrets).toEqual({ apiKey: { set: false }, 'smtp.password': { set: false } });
    expect((await core.client.get('/api/plugins/secret-probe/seen')).body.config).toEqual({ endpoint: 'https://api.example.com/v1', retries: 2 });
    expect(await core.core.database.knex('settings').where({ key: 'secrets.keyCheck' }).first()).toBeUndefined();
  });
});
