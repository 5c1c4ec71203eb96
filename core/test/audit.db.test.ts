import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, preparedDataDir, startTestCore, TEST_ADMIN_PASSWORD, TestClient, type TestCore } from '@aiplat/testing';
import { AUDIT_LOCK_KEY, AUDIT_UNAVAILABLE_MESSAGE, AuditWriter, type AuditEntry } from '../src/audit/audit.js';
import { canonicalJson, COLUMN_LIST, GENESIS_HASH, recordHash, rowToRecord, type AuditRow, type ChainedRecord } from '../src/audit/chain.js';
import { latestHead, readHeadFile } from '../src/audit/head.js';
import { auditChainMigration } from '../src/audit/migration.js';
import { verifyChain, type VerifyResult } from '../src/audit/verify.js';
import { openDatabase } from '../src/db/database.js';

const PLUGINS = ['examples', 'core/test/fixtures/plugins/probe', 'core/test/fixtures/audit-plugin'];
const VIEWER_PASSWORD = 'viewer-password-5678';

async function until<T>(probe: () => Promise<T>, ok: (value: T) => boolean, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Rows of the log as records, oldest first. */
async function records(db: Knex, where: (q: Knex.QueryBuilder) => void = () => undefined): Promise<ChainedRecord[]> {
  const query = db('audit_log').select(COLUMN_LIST).orderBy('id');
  where(query);
  return ((await query) as AuditRow[]).map(rowToRecord);
}

/** RFC 4180: fields of each line; an empty unquoted field is null, `""` the empty string. */
function parseCsv(text: string): (string | null)[][] {
  const rows: (string | null)[][] = [];
  let row: (string | null)[] = [];
  let field = '';
  let quoted = false;
  let inQuotes = false;
  const end = () => {
    row.push(field === '' && !quoted ? null : field);
    field = '';
    quoted = false;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inQuotes) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') inQuotes = false;
      else field += c;
    } else if (c === '"') {
      inQuotes = true;
      quoted = true;
    } else if (c === ',') end();
    else if (c === '\r' && text[i + 1] === '\n') {
      end();
      rows.push(row);
      row = [];
      i++;
    } else field += c;
  }
  if (field !== '' || row.length > 0) {
    end();
    rows.push(row);
  }
  return rows;
}

class Rollback extends Error {}

/** Tamper with the log in a transaction (trigger disabled, as an attacker with DDL rights would), verify, roll back. */
async function tampered(db: Knex, tamper: (trx: Knex) => Promise<void>): Promise<VerifyResult> {
  let result: VerifyResult | undefined;
  await db
    .transaction(async (trx) => {
      await trx.raw('alter table audit_log disable trigger user');
      await tamper(trx);
      result = await verifyChain(trx, { batchSize: 1000 });
      throw new Rollback();
    })
    .catch((error: unknown) => {
      if (!(error instanceof Rollback)) throw error;
    });
  return result!;
}

async function signIn(core: TestCore, username: string, password: string): Promise<TestClient> {
  const res = await core.client.anonymous().post('/api/v1/auth/login', { username, password });
  expect(res.status, res.text).toBe(200);
  return core.client.withToken(res.body.accessToken as string);
}

describe('audit log', () => {
  let core: TestCore;
  let db: Knex;
  let viewer: TestClient;
  beforeAll(async () => {
    core = await startTestCore({ plugins: PLUGINS });
    db = core.core.database.knex;
    const created = await core.client.post('/api/v1/users', { username: 'vera', password: VIEWER_PASSWORD, roles: ['Viewer'] });
    expect(created.status, created.text).toBe(201);
    viewer = await signIn(core, 'vera', VIEWER_PASSWORD);
  });
  afterAll(() => core?.stop());

  it('writes one chained row per mutating request: actor, action, resource, request id, client address', async () => {
    const res = await core.client.post('/api/plugins/hello/greetings', { name: 'Audited' }, { headers: { 'x-request-id': 'audit-req-1', 'x-forwarded-for': '203.0.113.7' } });
    expect(res.status).toBe(200);
    const [row] = await records(db, (q) => q.where({ request_id: 'audit-req-1' }));
    expect(row).toMatchObject({
      actorType: 'user',
      actorName: 'admin',
      action: 'hello:POST /greetings',
      plugin: 'hello',
      requestId: 'audit-req-1',
      clientIp: '203.0.113.7',
      outcome: 'success',
      status: 200,
      details: { method: 'POST', path: '/api/plugins/hello/greetings', params: {} },
    });
    expect(row!.actorId).toMatch(/\S/);
    expect(row!.hash).toMatch(/^[0-9a-f]{64}$/);
    const [before] = await records(db, (q) => q.where({ id: row!.id - 1 }));
    expect(row!.prevHash).toBe(before!.hash);
    expect(recordHash(row!)).toBe(row!.hash);

    // `auditResource` names the resource; `ctx.auditInfo` adds the team and details (redacted).
    const thing = await core.client.put('/api/plugins/audit-probe/things/t-1', { note: 'first', team: 'default' }, { headers: { 'x-request-id': 'audit-req-2' } });
    expect(thing.status).toBe(200);
    const [thingRow] = await records(db, (q) => q.where({ request_id: 'audit-req-2' }));
    expect(thingRow).toMatchObject({
      action: 'audit-probe:PUT /things/:id',
      resourceType: 'thing',
      resourceId: 't-1',
      teamId: 'default',
      details: { method: 'PUT', path: '/api/plugins/audit-probe/things/t-1', params: { id: 't-1' }, note: 'first', apiKey: '••••' },
    });
    // A metered-style read writes nothing.
    const count = await db('audit_log').count<{ count: number }[]>('* as count');
    await core.client.get('/api/plugins/hello/greeting?name=Ada');
    expect(await db('audit_log').count<{ count: number }[]>('* as count')).toEqual(count);
  });

  it('audits sign-in, refresh, refresh-token reuse and sign-out, never the password or a token', async () => {
    const anon = core.client.anonymous();
    const ip = { headers: { 'x-forwarded-for': '198.51.100.20' } };
    const wrong = await anon.post('/api/v1/auth/login', { username: 'vera', password: 'not-the-password-1' }, ip);
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe('invalid_credentials');
    expect((await anon.post('/api/v1/auth/login', { username: 'ghost', password: 'not-the-password-2' }, ip)).status).toBe(401);
    const login = await anon.post('/api/v1/auth/login', { username: 'vera', password: VIEWER_PASSWORD }, ip);
    expect(login.status).toBe(200);
    const first = login.body.refreshToken as string;
    const rotated = await anon.post('/api/v1/auth/refresh', { refreshToken: first });
    expect(rotated.status).toBe(200);
    const reuse = await anon.post('/api/v1/auth/refresh', { refreshToken: first });
    expect(reuse.status).toBe(401);
    const bogus = await anon.post('/api/v1/auth/refresh', { refreshToken: 'no-such-refresh-token' });
    expect(bogus.status).toBe(401);
    expect(bogus.body.error.message).toBe('The refresh token is not valid');
    const fresh = await anon.post('/api/v1/auth/login', { username: 'vera', password: VIEWER_PASSWORD }, ip);
    expect((await anon.post('/api/v1/auth/logout', { refreshToken: fresh.body.refreshToken })).status).toBe(204);

    const rows = await records(db, (q) => q.whereLike('action', 'core:auth.%'));
    const vera = (await db('users').where({ username: 'vera' }).first('id')) as { id: string };
    const eight = rows.slice(-8);
    expect(eight.map((r) => [r.action, r.outcome, r.actorType, r.actorName])).toEqual([
      ['core:auth.login', 'denied', 'anonymous', 'vera'],
      ['core:auth.login', 'denied', 'anonymous', 'ghost'],
      ['core:auth.login', 'success', 'user', 'vera'],
      ['core:auth.refresh', 'success', 'user', 'vera'],
      ['core:auth.refresh-reuse', 'denied', 'anonymous', null],
      ['core:auth.refresh', 'denied', 'anonymous', null],
      ['core:auth.login', 'success', 'user', 'vera'],
      ['core:auth.logout', 'success', 'user', 'vera'],
    ]);
    expect(eight[0]).toMatchObject({ status: 401, clientIp: '198.51.100.20', details: { username: 'vera', method: 'password', reason: 'invalid_credentials' } });
    expect(eight[2]).toMatchObject({ actorId: vera.id, resourceType: 'user', resourceId: vera.id, status: 200 });
    expect(eight[4]).toMatchObject({ resourceType: 'user', resourceId: vera.id, details: { familyRevoked: true, username: 'vera' } });
    expect(eight[7]).toMatchObject({ actorId: vera.id, resourceId: vera.id });
    const text = JSON.stringify(rows);
    for (const secret of ['not-the-password-1', 'not-the-password-2', VIEWER_PASSWORD, TEST_ADMIN_PASSWORD, first, rotated.body.refreshToken, fresh.body.refreshToken, login.body.accessToken]) {
      expect(text).not.toContain(secret);
    }
  });

  it('audits refused requests: 401 as anonymous, 403 with the caller, custom-auth failures', async () => {
    const anon = await core.client.anonymous().get('/api/v1/audit', { headers: { 'x-request-id': 'denied-401' } });
    expect(anon.status).toBe(401);
    const forged = await core.client.withToken('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad').get('/api/v1/audit', { headers: { 'x-request-id': 'denied-401b' } });
    expect(forged.status).toBe(401);
    const forbidden = await viewer.get('/api/v1/audit', { headers: { 'x-request-id': 'denied-403' } });
    expect(forbidden.status).toBe(403);
    const disable = await viewer.post('/api/v1/plugins/hello/disable', undefined, { headers: { 'x-request-id': 'denied-403b' } });
    expect(disable.status).toBe(403);
    const custom = await core.client.anonymous().get('/api/plugins/probe/openai-style', { headers: { 'x-request-id': 'denied-custom' } });
    expect(custom.status).toBe(401);

    const byRequest = async (id: string) => (await records(db, (q) => q.where({ request_id: id })))[0];
    expect(await byRequest('denied-401')).toMatchObject({
      action: 'core:GET /audit',
      actorType: 'anonymous',
      actorId: null,
      outcome: 'denied',
      status: 401,
      details: { method: 'GET', path: '/api/v1/audit', code: 'unauthenticated', permission: 'audit:read', bearer: 'missing' },
    });
    expect((await byRequest('denied-401b'))!.details).toMatchObject({ bearer: 'invalid' });
    expect(JSON.stringify(await byRequest('denied-401b'))).not.toContain('eyJhbGciOiJIUzI1NiJ9');
    expect(await byRequest('denied-403')).toMatchObject({
      action: 'core:GET /audit',
      actorType: 'user',
      actorName: 'vera',
      outcome: 'denied',
      status: 403,
      details: { code: 'forbidden', permission: 'audit:read' },
    });
    expect(await byRequest('denied-403b')).toMatchObject({ action: 'core:POST /plugins/:id/disable', actorName: 'vera', resourceType: 'plugin', resourceId: 'hello', outcome: 'denied' });
    expect(await byRequest('denied-custom')).toMatchObject({ action: 'probe:GET /openai-style', plugin: 'probe', actorType: 'anonymous', outcome: 'denied', status: 401 });
    // The refused request changed nothing.
    expect((await core.client.get('/api/v1/plugins/hello')).body.state).toBe('enabled');
  });

  it('records plugin lifecycle changes: the administrator request and the system transition', async () => {
    const res = await core.client.post('/api/v1/plugins/hello-shout/disable', undefined, { headers: { 'x-request-id': 'lifecycle-1' } });
    expect(res.status).toBe(200);
    const [request] = await records(db, (q) => q.where({ request_id: 'lifecycle-1' }));
    expect(request).toMatchObject({ action: 'core:POST /plugins/:id/disable', actorName: 'admin', resourceType: 'plugin', resourceId: 'hello-shout', details: { changed: ['hello-shout'], cascade: false } });
    const system = await until(
      () => records(db, (q) => q.where({ action: 'core:plugin.disabled', resource_id: 'hello-shout' })),
      (rows) => rows.length > 0,
      'the plugin.disabled row',
    );
    expect(system[0]).toMatchObject({ actorType: 'system', actorName: 'system', outcome: 'success', resourceType: 'plugin', details: { version: '1.0.0', reason: 'disabled by an administrator' } });
    expect(system[0]!.id).toBeGreaterThan(request!.id);
    expect((await core.client.post('/api/v1/plugins/hello-shout/enable')).status).toBe(200);
    await until(() => records(db, (q) => q.where({ action: 'core:plugin.enabled', resource_id: 'hello-shout' })), (rows) => rows.length > 0, 'the plugin.enabled row');
    // Settings changes name the plugin as their resource.
    const settings = await core.client.put('/api/v1/plugins/hello/config', { greetingWord: 'Hi' }, { headers: { 'x-request-id': 'lifecycle-2' } });
    expect(settings.status).toBe(200);
    expect((await records(db, (q) => q.where({ request_id: 'lifecycle-2' })))[0]).toMatchObject({ action: 'core:PUT /plugins/:id/config', resourceType: 'plugin', resourceId: 'hello', actorName: 'admin' });
    await core.client.put('/api/v1/plugins/hello/config', { greetingWord: 'Hello' });
  });

  it('records plugins that fail at boot, by the system', async () => {
    const other = await startTestCore({ plugins: ['core/test/fixtures/plugins/throws-on-start', 'core/test/fixtures/plugins/bad-manifest'] });
    try {
      const rows = await records(other.core.database.knex, (q) => q.where({ action: 'core:plugin.failed' }));
      expect(rows.map((r) => [r.resourceId, r.actorType, r.outcome])).toEqual(
        expect.arrayContaining([
          ['throws-on-start', 'system', 'failure'],
          ['bad-manifest', 'system', 'failure'],
        ]),
      );
      expect(rows.find((r) => r.resourceId === 'throws-on-start')!.details).toMatchObject({ reason: expect.stringContaining('start failed') });
    } finally {
      await other.stop();
    }
  });

  it('lets plugins write explicit rows and emit events through the SDK, redacted', async () => {
    const started = await records(db, (q) => q.where({ action: 'audit-probe:started' }));
    expect(started[0]).toMatchObject({ actorType: 'plugin', actorId: 'audit-probe', plugin: 'audit-probe', details: { version: '1.0.0' } });

    const made = await core.client.post('/api/plugins/audit-probe/explicit', { id: 'e-1', note: `admin password ${TEST_ADMIN_PASSWORD} in a note` }, { headers: { 'x-request-id': 'explicit-1' } });
    expect(made.status).toBe(201);
    const rows = await records(db, (q) => q.where({ request_id: 'explicit-1' }));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action: 'audit-probe:thing.created',
      actorName: 'admin',
      resourceType: 'thing',
      resourceId: 'e-1',
      details: { note: 'admin password •••• in a note', password: '••••' },
    });
    expect(JSON.stringify(rows)).not.toContain('hunter2');
    // An explicit route that writes no row has none.
    await core.client.post('/api/plugins/audit-probe/explicit', { id: 'e-2', skip: true }, { headers: { 'x-request-id': 'explicit-2' } });
    expect(await records(db, (q) => q.where({ request_id: 'explicit-2' }))).toEqual([]);

    // The service with the request's transaction commits and rolls back with it.
    expect((await core.client.post('/api/plugins/audit-probe/service-in-transaction', { id: 's-1' })).status).toBe(200);
    expect((await core.client.post('/api/plugins/audit-probe/service-in-transaction', { id: 's-2', fail: true })).status).toBe(500);
    const steps = await records(db, (q) => q.where({ action: 'audit-probe:job.step' }));
    expect(steps.map((r) => [r.resourceId, r.actorType])).toEqual([['s-1', 'plugin']]);
    expect(await db('p_audit_probe_things').whereIn('id', ['s-1', 's-2']).pluck('id')).toEqual(['s-1']);

    // Outside any transaction (background work).
    expect((await core.client.post('/api/plugins/audit-probe/background', { outcome: 'failure' })).status).toBe(200);
    const done = await records(db, (q) => q.where({ action: 'audit-probe:job.done' }));
    expect(done[0]).toMatchObject({ actorType: 'plugin', outcome: 'failure', teamId: 'default', details: { took: 3 } });
  });

  it('fails closed: when the row cannot be written the request answers 503 and its change is not committed', async () => {
    // Fault injection: the database refuses every insert into audit_log.
    await db.raw(`create function audit_test_refuse() returns trigger language plpgsql as $$ begin raise exception 'injected audit failure'; end $$`);
    await db.raw('create trigger audit_test_refuse before insert on audit_log for each row execute function audit_test_refuse()');
    try {
      const greeting = await core.client.post('/api/plugins/hello/greetings', { name: 'FailClosed' });
      expect(greeting.status).toBe(503);
      expect(greeting.body.error).toMatchObject({ code: 'unavailable', message: AUDIT_UNAVAILABLE_MESSAGE });
      expect(greeting.text).not.toContain('injected');
      expect(await db('p_hello_counters').where({ name: 'FailClosed' }).first()).toBeUndefined();

      const explicit = await core.client.post('/api/plugins/audit-probe/explicit', { id: 'fail-closed' });
      expect(explicit.status).toBe(503);
      expect(await db('p_audit_probe_things').where({ id: 'fail-closed' }).first()).toBeUndefined();

      const disable = await core.client.post('/api/v1/plugins/hello-shout/disable');
      expect(disable.status).toBe(503);
      expect((await db('plugin_states').where({ id: 'hello-shout' }).first('enabled')).enabled).toBe(true);
      expect((await core.client.get('/api/v1/plugins/hello-shout')).body.state).toBe('enabled');

      // A refused request whose denial cannot be recorded is refused with 503 too.
      expect((await core.client.anonymous().get('/api/v1/audit')).status).toBe(503);
      expect(core.logs.some((l) => l.msg === 'audit row could not be written: refusing the request')).toBe(true);
    } finally {
      await db.raw('drop trigger audit_test_refuse on audit_log');
      await db.raw('drop function audit_test_refuse()');
    }
    const again = await core.client.post('/api/plugins/hello/greetings', { name: 'FailClosed' });
    expect(again.status).toBe(200);
    expect((await core.client.get('/api/v1/audit/verify')).body).toMatchObject({ ok: true, firstBadId: null });
  });

  it('is append-only: UPDATE, DELETE and TRUNCATE are refused with a clear message, and inserts must extend the chain', async () => {
    await expect(db('audit_log').where({ id: 1 }).update({ action: 'x' })).rejects.toThrow(/audit_log is append-only: UPDATE is not allowed/);
    await expect(db('audit_log').where({ id: 1 }).delete()).rejects.toThrow(/audit_log is append-only: DELETE is not allowed/);
    await expect(db.raw('truncate audit_log')).rejects.toThrow(/audit_log is append-only: TRUNCATE is not allowed/);
    // An insert must link to the row before it: no gaps, no second chain.
    const head = await latestHead(db);
    const row = (id: number, prevHash: string) => ({ id, action: 'core:forged', actor_type: 'system', outcome: 'success', prev_hash: prevHash, hash: 'f'.repeat(64) });
    await expect(db('audit_log').insert(row(head.id + 2, head.hash))).rejects.toThrow(/audit_log is a hash chain: row \d+ must follow row \d+/);
    await expect(db('audit_log').insert(row(head.id + 1, 'e'.repeat(64)))).rejects.toThrow(/audit_log is a hash chain/);
    await expect(db('audit_log').insert(row(head.id, head.hash))).rejects.toThrow();
  });

  it('lists rows newest first with filters and a keyset cursor', async () => {
    const all = await records(db);
    const newestFirst = [...all].reverse();
    const first = await core.client.get('/api/v1/audit');
    expect(first.status).toBe(200);
    expect(first.body.items.map((r: ChainedRecord) => r.id)).toEqual(newestFirst.slice(0, 50).map((r) => r.id));
    expect(first.body.items[0]).toEqual(newestFirst[0]);

    // Follow the cursor to the end: every row once, in order.
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: { items: ChainedRecord[]; nextCursor: string | null } } = await core.client.get(`/api/v1/audit?limit=7${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.body.items.length).toBeLessThanOrEqual(7);
      seen.push(...page.body.items.map((r) => r.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen).toEqual(newestFirst.map((r) => r.id));

    const ids = async (query: string) => {
      const res = await core.client.get(`/api/v1/audit?limit=500&${query}`);
      expect(res.status, res.text).toBe(200);
      return (res.body.items as ChainedRecord[]).map((r) => r.id);
    };
    const expectIds = (pick: (r: ChainedRecord) => boolean) => newestFirst.filter(pick).map((r) => r.id);
    expect(await ids('actor=vera')).toEqual(expectIds((r) => r.actorName === 'vera' || r.actorId === 'vera'));
    expect(await ids('actor=vera').then((x) => x.length)).toBeGreaterThan(3);
    const veraId = ((await db('users').where({ username: 'vera' }).first('id')) as { id: string }).id;
    expect(await ids(`actor=${veraId}`)).toEqual(expectIds((r) => r.actorId === veraId));
    expect(await ids('actorType=system')).toEqual(expectIds((r) => r.actorType === 'system'));
    expect(await ids('action=core:auth.login')).toEqual(expectIds((r) => r.action === 'core:auth.login'));
    expect(await ids(`action=${encodeURIComponent('core:auth.*')}`)).toEqual(expectIds((r) => r.action.startsWith('core:auth.')));
    expect(await ids(`action=${encodeURIComponent('core:POST /plugins*')}`)).toEqual(expectIds((r) => r.action.startsWith('core:POST /plugins')));
    // `%` and `_` in a prefix are literal.
    expect(await ids(`action=${encodeURIComponent('core%*')}`)).toEqual([]);
    expect(await ids('resource=plugin:hello-shout')).toEqual(expectIds((r) => r.resourceType === 'plugin' && r.resourceId === 'hello-shout'));
    expect(await ids('resource=thing')).toEqual(expectIds((r) => r.resourceType === 'thing'));
    expect(await ids('outcome=denied')).toEqual(expectIds((r) => r.outcome === 'denied'));
    expect(await ids('plugin=audit-probe&outcome=success')).toEqual(expectIds((r) => r.plugin === 'audit-probe' && r.outcome === 'success'));
    expect(await ids('team=default')).toEqual(expectIds((r) => r.teamId === 'default'));
    expect(await ids('requestId=denied-403')).toEqual(expectIds((r) => r.requestId === 'denied-403'));
    const middle = all[Math.floor(all.length / 2)]!;
    const from = encodeURIComponent(middle.at);
    expect(await ids(`from=${from}`)).toEqual(expectIds((r) => r.at >= middle.at));
    expect(await ids(`to=${from}`)).toEqual(expectIds((r) => r.at < middle.at));
    expect(await ids(`from=${encodeURIComponent('2000-01-01T00:00:00Z')}&to=${encodeURIComponent('2000-01-02T00:00:00+08:00')}`)).toEqual([]);
  });

  it('refuses bad query input with a readable 400, and treats injection strings as data', async () => {
    const cases: [string, string][] = [
      ['limit=0', 'Invalid query: limit: must be >= 1'],
      ['limit=501', 'Invalid query: limit: must be <= 500'],
      ['limit=ten', 'Invalid query: limit: must be integer'],
      ['cursor=-5', 'Invalid query: cursor: must match pattern "^[1-9][0-9]{0,15}$"'],
      ['cursor=1%20or%201%3D1', 'Invalid query: cursor: must match pattern "^[1-9][0-9]{0,15}$"'],
      ['outcome=maybe', 'Invalid query: outcome: must be one of "success", "denied", "failure", "error"'],
      ['actorType=robot', 'Invalid query: actorType: must be one of "user", "token", "plugin", "system", "anonymous"'],
      ['from=yesterday', 'Invalid query: from: must match format "date-time"'],
      ['from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', 'Invalid query: from must be earlier than to'],
      ['colour=red', 'Invalid query: colour: unknown field "colour"'],
      [`actor=${'x'.repeat(201)}`, 'Invalid query: actor: must be at most 200 characters long'],
      ['actor=', 'Invalid query: actor: must be at least 1 character long'],
    ];
    for (const [query, message] of cases) {
      const res = await core.client.get(`/api/v1/audit?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error.code, query).toBe('validation_failed');
      expect(res.body.error.message, query).toBe(message);
    }
    const exported = await core.client.get('/api/v1/audit/export?format=xml');
    expect(exported.status).toBe(400);
    expect(exported.body.error.message).toBe('Invalid query: format: must be one of "jsonl", "csv"');
    for (const injection of ["' or 1=1 --", "admin'; drop table audit_log; --", '%', '_', '\\']) {
      for (const key of ['actor', 'action', 'resource', 'plugin']) {
        const res = await core.client.get(`/api/v1/audit?${key}=${encodeURIComponent(injection)}`);
        expect(res.status, `${key}=${injection}`).toBe(200);
        expect(res.body.items, `${key}=${injection}`).toEqual([]);
      }
    }
    expect((await core.client.get('/api/v1/audit/verify')).body.ok).toBe(true);
  });

  it('exports JSON Lines and CSV that parse back and re-hash, and records the export', async () => {
    // A resource id with a comma, a quote and a newline: CSV must quote it.
    const odd = 'a,b"c\nd';
    expect((await core.client.put(`/api/plugins/audit-probe/things/${encodeURIComponent(odd)}`, { note: 'x' })).status).toBe(200);
    const before = await records(db);

    const jsonl = await core.client.get('/api/v1/audit/export?format=jsonl');
    expect(jsonl.status).toBe(200);
    expect(jsonl.headers.get('content-type')).toBe('application/x-ndjson; charset=utf-8');
    expect(jsonl.headers.get('content-disposition')).toMatch(/^attachment; filename="aiplat-audit-.*\.jsonl"$/);
    const lines = jsonl.text.trimEnd().split('\n').map((line) => JSON.parse(line) as ChainedRecord);
    // Oldest first, every row present when it started (the export's own row came first).
    expect(lines.map((r) => r.id)).toEqual([...before.map((r) => r.id), before.length + 1]);
    expect(lines.slice(0, before.length)).toEqual(before);
    for (const record of lines) expect(recordHash(record)).toBe(record.hash);
    expect(lines.at(-1)).toMatchObject({ action: 'core:audit.export', actorName: 'admin', details: { format: 'jsonl', filters: {} } });

    const csv = await core.client.get('/api/v1/audit/export?format=csv&resource=thing');
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    const [header, ...rows] = parseCsv(csv.text);
    expect(header).toEqual(['id', 'at', 'actorType', 'actorId', 'actorName', 'action', 'resourceType', 'resourceId', 'teamId', 'plugin', 'requestId', 'clientIp', 'outcome', 'status', 'details', 'prevHash', 'hash']);
    const things = before.filter((r) => r.resourceType === 'thing');
    expect(rows).toHaveLength(things.length);
    const parsed = rows.map((fields) => {
      const record = Object.fromEntries(header!.map((name, i) => [name!, fields[i]])) as Record<string, unknown>;
      return { ...record, id: Number(record.id), status: record.status === null ? null : Number(record.status), details: JSON.parse(record.details as string) as unknown } as ChainedRecord;
    });
    expect(parsed).toEqual(things);
    expect(parsed.find((r) => r.resourceId === odd)).toBeDefined();
    for (const record of parsed) expect(recordHash(record)).toBe(record.hash);
    expect(canonicalJson(parsed[0]!.details)).toBe(rows[0]![header!.indexOf('details')]);
  });

  it('verifies the chain through the API', async () => {
    const res = await core.client.get('/api/v1/audit/verify');
    const count = (await db('audit_log').count<{ count: number }[]>('* as count'))[0]!.count;
    expect(res.body).toEqual({ ok: true, checked: Number(count), firstBadId: null, lastId: Number(count) });
    expect((await viewer.get('/api/v1/audit/verify')).status).toBe(403);
  });

  it('keeps one chain under concurrent requests (a single connection embedded, the advisory lock on PostgreSQL)', async () => {
    const before = (await latestHead(db)).id;
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        i % 4 === 3 ? core.client.anonymous().get('/api/v1/audit') : core.client.post('/api/plugins/hello/greetings', { name: `Concurrent${i % 5}` }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([...Array(30).fill(200), ...Array(10).fill(401)]);
    expect((await latestHead(db)).id).toBe(before + 40);
    expect(await verifyChain(db)).toMatchObject({ ok: true, firstBadId: null });
  });
});

describe('audit writers on one database', () => {
  let core: TestCore;
  let db: Knex;
  beforeAll(async () => {
    core = await startTestCore();
    db = core.core.database.knex;
  });
  afterAll(() => core?.stop());

  const entry = (i: number): AuditEntry => ({ action: 'core:test.concurrent', actor: { type: 'system', name: 'system' }, details: { i } });

  it('serializes appends of several writers (replicas) in overlapping transactions', async () => {
    const kind = core.core.database.kind;
    // The embedded engine supports advisory locks too; its single connection already serializes.
    await db.transaction((trx) => trx.raw('select pg_advisory_xact_lock(?::bigint)', [AUDIT_LOCK_KEY]));
    const writers = Array.from({ length: 6 }, () => new AuditWriter(undefined, { serialize: kind === 'postgres' ? 'advisory-lock' : 'single-connection' }));
    const before = (await latestHead(db)).id;
    await Promise.all(
      writers.flatMap((writer, w) =>
        Array.from({ length: 5 }, (_, n) =>
          db.transaction(async (trx) => {
            await writer.write(trx, entry(w * 100 + n));
            await new Promise((r) => setTimeout(r, 5));
            await writer.write(trx, entry(w * 100 + n + 50));
          }),
        ),
      ),
    );
    expect((await latestHead(db)).id).toBe(before + 60);
    expect(await verifyChain(db)).toMatchObject({ ok: true, checked: before + 60 });
  });

  it('recovers when its remembered head was rolled back', async () => {
    const writer = new AuditWriter(undefined, { serialize: core.core.database.kind === 'postgres' ? 'advisory-lock' : 'single-connection' });
    await writer.write(db, entry(1));
    await db
      .transaction(async (trx) => {
        await writer.write(trx, entry(2));
        throw new Rollback();
      })
      .catch(() => undefined);
    const written = await writer.write(db, entry(3));
    expect(written!.id).toBe((await latestHead(db)).id);
    expect(await verifyChain(db)).toMatchObject({ ok: true });
  });

  it('without the lock, concurrent appends never fork: PostgreSQL refuses one (id collision), PGlite runs them one after another', async () => {
    const unlocked = [new AuditWriter(undefined, { serialize: 'single-connection' }), new AuditWriter(undefined, { serialize: 'single-connection' })];
    const results = await Promise.allSettled(
      unlocked.map((writer, i) =>
        db.transaction(async (trx) => {
          await writer.write(trx, entry(900 + i));
          await new Promise((r) => setTimeout(r, 200));
        }),
      ),
    );
    // PGlite has one connection, so the second transaction waits for the first: both append.
    expect(results.map((r) => r.status).sort()).toEqual(core.core.database.kind === 'postgres' ? ['fulfilled', 'rejected'] : ['fulfilled', 'fulfilled']);
    expect(await verifyChain(db)).toMatchObject({ ok: true });
  });
});

describe('tamper evidence on a 10,000-row log', () => {
  let core: TestCore;
  let db: Knex;
  let first: number;
  let last: number;
  let k: number;
  beforeAll(async () => {
    core = await startTestCore();
    db = core.core.database.knex;
    const writer = new AuditWriter(undefined, { serialize: core.core.database.kind === 'postgres' ? 'advisory-lock' : 'single-connection' });
    const actors = ['alice', 'bob', 'carol'];
    const entries: AuditEntry[] = Array.from({ length: 10_000 }, (_, i) => ({
      action: i % 3 === 0 ? 'core:POST /things' : `plugin-${i % 7}:job.${i % 11}`,
      actor: i % 5 === 0 ? undefined : { type: 'user', id: `u-${i % 3}`, name: actors[i % 3] },
      outcome: (['success', 'denied', 'failure', 'error'] as const)[i % 4],
      resource: { type: 'thing', id: `t-${i}` },
      team: i % 2 ? 'default' : null,
      plugin: i % 3 === 0 ? undefined : `plugin-${i % 7}`,
      requestId: `r-${i}`,
      clientIp: '192.0.2.1',
      status: 200 + (i % 300),
      details: { i, f: i / 7, big: 2 ** 53 - i, neg: -0, exp: 1e21 * (i + 1), text: 'ü 🙂 "quoted" \\ back\nline', nested: { b: [1, 'two', null, true], a: {} }, odd: i === 77 ? 'lone \ud800 and nul \u0000' : null },
    }));
    const started = Date.now();
    const chained = await writer.writeMany(db, entries);
    first = chained[0]!.id;
    last = chained[chained.length - 1]!.id;
    k = first + 4_999;
    console.log(`built ${chained.length} rows in ${Date.now() - started} ms (${core.core.database.kind})`);
  }, 120_000);
  afterAll(() => core?.stop());

  const recordOf = async (trx: Knex, id: number) => (await records(trx, (q) => q.where({ id })))[0]!;
  const insert = (trx: Knex, record: ChainedRecord) =>
    trx('audit_log').insert({
      id: record.id,
      at: record.at,
      actor_type: record.actorType,
      actor_id: record.actorId,
      actor_name: record.actorName,
      action: record.action,
      resource_type: record.resourceType,
      resource_id: record.resourceId,
      team_id: record.teamId,
      plugin: record.plugin,
      request_id: record.requestId,
      client_ip: record.clientIp,
      outcome: record.outcome,
      status: record.status,
      details: canonicalJson(record.details),
      prev_hash: record.prevHash,
      hash: record.hash,
    });
  /** Make room for a row after `id` (ids above it move up by one). */
  const shiftAfter = async (trx: Knex, id: number) => {
    await trx('audit_log').where('id', '>', id).update({ id: trx.raw('-(id + 1)') });
    await trx('audit_log').where('id', '<', 0).update({ id: trx.raw('-id') });
  };

  it('verifies the untouched log, the cleaned text included', async () => {
    const started = Date.now();
    expect(await verifyChain(db)).toEqual({ ok: true, checked: last, firstBadId: null, lastId: last });
    console.log(`verified ${last} rows in ${Date.now() - started} ms`);
    expect((await recordOf(db, first + 77)).details).toMatchObject({ odd: 'lone \uFFFD and nul \uFFFD', neg: 0, text: 'ü 🙂 "quoted" \\ back\nline' });
  });

  it('edit of a row: names that row', async () => {
    expect(await tampered(db, (trx) => trx('audit_log').where({ id: k }).update({ details: JSON.stringify({ i: 0 }) }).then(() => undefined))).toMatchObject({
      ok: false,
      checked: k - 1,
      firstBadId: k,
      problem: 'its hash does not match its content',
    });
    expect((await tampered(db, (trx) => trx('audit_log').where({ id: k }).update({ outcome: 'success', status: 200 }).then(() => undefined))).firstBadId).toBe(k);
    expect((await tampered(db, (trx) => trx('audit_log').where({ id: first }).update({ at: new Date(0).toISOString() }).then(() => undefined))).firstBadId).toBe(first);
  });

  it('edit of a row with its hash recomputed: names the row after it', async () => {
    const result = await tampered(db, async (trx) => {
      const record = await recordOf(trx, k);
      const forged = { ...record, actorName: 'mallory' };
      await trx('audit_log').where({ id: k }).update({ actor_name: 'mallory', hash: recordHash(forged) });
    });
    expect(result).toMatchObject({ ok: false, firstBadId: k + 1, problem: 'its prevHash is not the hash of the row before it' });
  });

  it('delete of a row: names the missing row', async () => {
    expect(await tampered(db, (trx) => trx('audit_log').where({ id: k }).delete().then(() => undefined))).toMatchObject({
      ok: false,
      checked: k - 1,
      firstBadId: k,
      problem: `row ${k} is missing (the next row is ${k + 1})`,
    });
    expect((await tampered(db, (trx) => trx('audit_log').where({ id: 1 }).delete().then(() => undefined))).firstBadId).toBe(1);
  });

  it('insert of a row: names the inserted row, or the row after a well-forged one', async () => {
    const naive = await tampered(db, async (trx) => {
      await shiftAfter(trx, k);
      await insert(trx, { ...(await recordOf(trx, k)), id: k + 1, action: 'core:forged', prevHash: 'f'.repeat(64), hash: 'e'.repeat(64) });
    });
    expect(naive).toMatchObject({ ok: false, firstBadId: k + 1, problem: 'its prevHash is not the hash of the row before it' });

    const forged = await tampered(db, async (trx) => {
      const before = await recordOf(trx, k);
      await shiftAfter(trx, k);
      const record = { ...before, id: k + 1, action: 'core:forged', prevHash: before.hash };
      await insert(trx, { ...record, hash: recordHash(record) });
    });
    // The forged row chains onto row k; the row it displaced no longer fits.
    expect(forged).toMatchObject({ ok: false, firstBadId: k + 2 });

    const appended = await tampered(db, (trx) => insert(trx, { ...rowToRecordStub(), id: last + 1, prevHash: 'a'.repeat(64), hash: 'b'.repeat(64) }).then(() => undefined));
    expect(appended).toMatchObject({ ok: false, firstBadId: last + 1 });
  });

  it('reorder of rows: names the first row out of place', async () => {
    const swapped = await tampered(db, async (trx) => {
      await trx('audit_log').where({ id: k }).update({ id: -1 });
      await trx('audit_log').where({ id: k + 1 }).update({ id: k });
      await trx('audit_log').where({ id: -1 }).update({ id: k + 1 });
    });
    expect(swapped).toMatchObject({ ok: false, firstBadId: k, problem: 'its prevHash is not the hash of the row before it' });
    const moved = await tampered(db, (trx) => trx('audit_log').where({ id: k }).update({ id: last + 1 }).then(() => undefined));
    expect(moved).toMatchObject({ ok: false, firstBadId: k, problem: `row ${k} is missing (the next row is ${k + 1})` });
    // Content moved between two rows, ids kept.
    const contentSwap = await tampered(db, async (trx) => {
      const a = await recordOf(trx, k);
      const b = await recordOf(trx, k + 3);
      await trx('audit_log').where({ id: k }).update({ action: b.action, request_id: b.requestId });
      await trx('audit_log').where({ id: k + 3 }).update({ action: a.action, request_id: a.requestId });
    });
    expect(contentSwap.firstBadId).toBe(k);
  });

  it('names the first bad row through GET /api/v1/audit/verify, and is whole again once restored', async () => {
    const original = await recordOf(db, k);
    await db.raw('alter table audit_log disable trigger user');
    try {
      await db('audit_log').where({ id: k }).update({ details: JSON.stringify({ tampered: true }) });
    } finally {
      await db.raw('alter table audit_log enable trigger user');
    }
    const bad = await core.client.get('/api/v1/audit/verify');
    expect(bad.body).toMatchObject({ ok: false, checked: k - 1, firstBadId: k, problem: 'its hash does not match its content' });
    await db.raw('alter table audit_log disable trigger user');
    try {
      await db('audit_log').where({ id: k }).update({ details: canonicalJson(original.details) });
    } finally {
      await db.raw('alter table audit_log enable trigger user');
    }
    expect((await core.client.get('/api/v1/audit/verify')).body).toMatchObject({ ok: true, firstBadId: null });
    // Without a head file, rows cut from the end cannot be told from a shorter log: see the head file tests.
    expect(await tampered(db, (trx) => trx('audit_log').where({ id: last }).delete().then(() => undefined))).toMatchObject({ ok: true });
  });

  it('exports all 10,000 rows a page at a time', async () => {
    const res = await fetch(`${core.url}/api/v1/audit/export?format=jsonl&action=${encodeURIComponent('plugin-*')}`, { headers: { authorization: `Bearer ${core.client.token}` } });
    expect(res.status).toBe(200);
    let lines = 0;
    let chunks = 0;
    let rest = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      chunks++;
      const text = rest + decoder.decode(chunk, { stream: true });
      const parts = text.split('\n');
      rest = parts.pop()!;
      lines += parts.length;
    }
    const expected = (await db('audit_log').whereLike('action', 'plugin-%').count<{ count: number }[]>('* as count'))[0]!.count;
    expect(lines).toBe(Number(expected));
    expect(chunks).toBeGreaterThan(1);
  });
});

function rowToRecordStub(): ChainedRecord {
  return {
    id: 0,
    at: new Date().toISOString(),
    actorType: 'system',
    actorId: null,
    actorName: 'system',
    action: 'core:forged',
    resourceType: null,
    resourceId: null,
    teamId: null,
    plugin: null,
    requestId: null,
    clientIp: null,
    outcome: 'success',
    status: null,
    details: {},
    prevHash: GENESIS_HASH,
    hash: GENESIS_HASH,
  };
}

describe('audit head file', () => {
  let dir: string;
  let core: TestCore;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-audit-head-'));
  });
  afterAll(async () => {
    await core?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('exports the head at start, periodically and at stop; verify compares against it', async () => {
    const file = path.join(dir, 'nested', 'head.json');
    core = await startTestCore({ plugins: ['examples'], config: { auditHeadFile: file, auditHeadInterval: 1 } });
    const db = core.core.database.knex;
    const atStart = readHeadFile(file);
    expect(atStart).toMatchObject({ id: expect.any(Number), hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Head' })).status).toBe(200);
    const latest = await latestHead(db);
    await until(async () => readHeadFile(file), (head) => 'id' in head && head.id === latest.id, 'the periodic head export');
    expect(readHeadFile(file)).toEqual(latest);

    const ok = await core.client.get('/api/v1/audit/verify');
    expect(ok.body).toMatchObject({ ok: true, firstBadId: null, headFile: { id: latest.id, hash: latest.hash, matches: true } });

    // The stop writes the head it stops at (plugin stops at shutdown write no rows).
    expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Head' })).status).toBe(200);
    const beforeStop = await latestHead(db);
    await core.stop({ keep: true });
    expect(readHeadFile(file)).toEqual(beforeStop);
    core = await core.restart();
    const restarted = await latestHead(core.core.database.knex);
    expect(restarted.id).toBeGreaterThan(beforeStop.id);
    await until(async () => readHeadFile(file), (h) => 'id' in h && h.id === restarted.id, 'the head after the restart');
    expect(readHeadFile(file)).toEqual(restarted);
    expect((await core.client.get('/api/v1/audit/verify')).body).toMatchObject({ ok: true, headFile: { id: restarted.id, matches: true } });
  });

  it('catches a log rewritten up to its end, and a log cut short, which the chain alone cannot', async () => {
    const db = core.core.database.knex;
    const file = path.join(dir, 'nested', 'head.json');
    const head = readHeadFile(file);
    expect(head).toEqual(await latestHead(db));
    const headId = (head as { id: number }).id;
    // Rewrite every row from 2 on with a consistent chain: the chain verifies, the head does not.
    await db.raw('alter table audit_log disable trigger user');
    try {
      await db.transaction(async (trx) => {
        const all = await records(trx, (q) => q.where('id', '>=', 1));
        let prevHash = all[0]!.hash;
        for (const record of all.slice(1)) {
          const forged = { ...record, actorName: record.id === 2 ? 'mallory' : record.actorName, prevHash };
          const hash = recordHash(forged);
          await trx('audit_log').where({ id: record.id }).update({ actor_name: forged.actorName, prev_hash: prevHash, hash });
          prevHash = hash;
        }
      });
    } finally {
      await db.raw('alter table audit_log enable trigger user');
    }
    const rewritten = await core.client.get('/api/v1/audit/verify');
    expect(rewritten.body).toMatchObject({ ok: false, firstBadId: headId, headFile: { id: headId, matches: false } });
    expect(await verifyChain(db)).toMatchObject({ ok: true });
    // The exporter does not overwrite a head the log no longer extends.
    await new Promise((r) => setTimeout(r, 1500));
    expect(readHeadFile(file)).toEqual(head);
    expect(core.logs.some((l) => String(l.msg).includes('does not extend the head'))).toBe(true);

    // A log cut short: the head names a row that is gone.
    writeFileSync(file, JSON.stringify({ id: headId + 1000, hash: 'c'.repeat(64), at: null }));
    const cut = await core.client.get('/api/v1/audit/verify');
    const lastId = (await latestHead(db)).id;
    expect(cut.body).toMatchObject({ ok: false, firstBadId: lastId + 1, headFile: { id: headId + 1000, matches: false } });
    writeFileSync(file, 'not json');
    expect((await core.client.get('/api/v1/audit/verify')).body).toMatchObject({ ok: false, headFile: { matches: false, problem: expect.stringContaining('is not JSON') } });
    rmSync(file);
  });
});

describe('migration of a foundation audit log', () => {
  it('chains the rows written before it, in their order, and makes the table append-only', async () => {
    const created = process.env.AIPLAT_TEST_DATABASE === 'postgres' ? await createTestDatabase() : undefined;
    const dataDir = await preparedDataDir();
    const silent = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, child: () => silent };
    const database = await openDatabase({ dataDir, databaseUrl: created?.url, logger: silent });
    const db = database.knex;
    try {
      // The table as migration 0001 made it, with rows as the foundation wrote them (ids with gaps).
      await db.schema.createTable('audit_log', (t) => {
        t.bigIncrements('id').primary();
        t.timestamp('at', { useTz: true }).notNullable().defaultTo(db.fn.now());
        t.text('actor_id');
        t.text('actor_name');
        t.text('action').notNullable();
        t.text('plugin');
        t.text('request_id');
        t.integer('status');
        t.jsonb('details').notNullable().defaultTo('{}');
        t.index(['at']);
      });
      await db('audit_log').insert([
        { id: 3, action: 'core:POST /auth/login', status: 200, details: JSON.stringify({ method: 'POST', path: '/api/v1/auth/login', params: {} }) },
        { id: 7, action: 'hello:POST /greetings', actor_id: 'u1', actor_name: 'admin', plugin: 'hello', request_id: 'r7', status: 200, details: JSON.stringify({ n: 1.5, s: 'ü' }) },
        { id: 8, action: 'core:PUT /plugins/:id/config', actor_id: 'u1', actor_name: 'admin', status: 200, details: JSON.stringify({ values: { apiKey: '••••' } }) },
      ]);
      await db.transaction((trx) => auditChainMigration(trx));

      const rows = await records(db);
      expect(rows.map((r) => [r.id, r.action, r.actorType, r.outcome])).toEqual([
        [1, 'core:POST /auth/login', 'anonymous', 'success'],
        [2, 'hello:POST /greetings', 'user', 'success'],
        [3, 'core:PUT /plugins/:id/config', 'user', 'success'],
      ]);
      expect(rows[0]!.prevHash).toBe(GENESIS_HASH);
      expect(await verifyChain(db)).toEqual({ ok: true, checked: 3, firstBadId: null, lastId: 3 });
      const written = await new AuditWriter(undefined, { serialize: database.kind === 'postgres' ? 'advisory-lock' : 'single-connection' }).write(db, { action: 'core:after', details: {} });
      expect(written).toMatchObject({ id: 4, prevHash: rows[2]!.hash });
      expect(await verifyChain(db)).toMatchObject({ ok: true, checked: 4 });
      await expect(db('audit_log').where({ id: 1 }).delete()).rejects.toThrow(/append-only/);
      // Ids come from the writer only: the sequence is gone.
      await expect(db('audit_log').insert({ action: 'x', actor_type: 'system', outcome: 'success', prev_hash: 'x', hash: 'y' })).rejects.toThrow();
    } finally {
      await database.close();
      rmSync(dataDir, { recursive: true, force: true });
      await created?.drop();
    }
  });
});
