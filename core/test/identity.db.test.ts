// Users, roles, teams, personal API tokens, /me and sign-in throttling (identity issue items 1, 2, 4).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';

describe('identity: users, roles, teams, tokens', () => {
  let core: TestCore;

  beforeAll(async () => {
    core = await startTestCore({ plugins: ['examples'] });
  });
  afterAll(() => core?.stop());

  it('creates a user with roles by name and teams, who signs in and sees their permissions at /me', async () => {
    const team = await core.client.post('/api/v1/teams', { name: 'vision', description: 'image models' });
    expect(team.status).toBe(201);
    const res = await core.client.post('/api/v1/users', {
      username: 'olga',
      password: 'olga-password-1234',
      displayName: 'Olga',
      email: 'olga@example.com',
      roles: ['Viewer'],
      teams: [{ team: 'vision', roles: ['Operator'] }],
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ username: 'olga', roles: ['viewer'], displayName: 'Olga', source: 'local', disabled: false });
    const login = await core.client.anonymous().post('/api/v1/auth/login', { username: 'olga', password: 'olga-password-1234' });
    expect(login.status).toBe(200);
    const olga = core.client.withToken(login.body.accessToken);
    const me = (await olga.get('/api/v1/me')).body;
    expect(me.user).toMatchObject({ username: 'olga', roles: ['viewer'] });
    expect(me.teams).toEqual([{ id: team.body.id, name: 'vision', roles: ['operator'] }]);
    expect(me.defaultTeam).toBe(team.body.id);
    // Viewer globally; Operator in vision: greetings:write only there.
    expect(me.permissions).toContain('greetings:write');
    expect(me.teamPermissions[team.body.id]).toContain('greetings:write');
    expect(me.permissions).not.toContain('users:manage');
    // The route check passes on the team grant.
    expect((await olga.post('/api/plugins/hello/greetings', { name: 'Ada' })).status).toBe(200);
  });

  it('enforces the password policy and unique usernames, with readable messages', async () => {
    const short = await core.client.post('/api/v1/users', { username: 'pat', password: 'short' });
    expect(short.status).toBe(400);
    expect(short.body.error.message).toBe('The password must have at least 12 characters');
    const same = await core.client.post('/api/v1/users', { username: 'patricia-long', password: 'patricia-long' });
    expect(same.body.error.message).toContain('not the username');
    const dup = await core.client.post('/api/v1/users', { username: 'OLGA', password: 'another-password-1' });
    expect(dup.status).toBe(409);
    expect(dup.body.error.message).toBe('A user named "OLGA" exists');
    const role = await core.client.post('/api/v1/users', { username: 'pat', password: 'pat-password-1234', roles: ['Wizard'] });
    expect(role.status).toBe(400);
    expect(role.body.error.message).toMatch(/^Unknown role "Wizard" \(roles: Admin, Operator, Viewer/);
    const unknownField = await core.client.post('/api/v1/users', { username: 'pat', password: 'pat-password-1234', isAdmin: true });
    expect(unknownField.status).toBe(400);
    const injection = await core.client.post('/api/v1/users', { username: "x'; drop table users; --", password: 'pat-password-1234' });
    expect(injection.status).toBe(400);
    expect((await core.client.get('/api/v1/users')).status).toBe(200);
  });

  it('disables, re-enables and soft-deletes users; a disabled user’s token stops working at once', async () => {
    const { id, client } = await core.createUser('dina', ['operator']);
    expect((await client.get('/api/v1/me')).status).toBe(200);
    expect((await core.client.patch(`/api/v1/users/${id}`, { disabled: true })).status).toBe(200);
    expect((await client.get('/api/v1/me')).status).toBe(401);
    expect((await core.client.anonymous().post('/api/v1/auth/login', { username: 'dina', password: 'dina-password-1234' })).status).toBe(401);
    expect((await core.client.patch(`/api/v1/users/${id}`, { disabled: false })).status).toBe(200);
    expect((await core.client.anonymous().post('/api/v1/auth/login', { username: 'dina', password: 'dina-password-1234' })).status).toBe(200);
    expect((await core.client.delete(`/api/v1/users/${id}`)).status).toBe(204);
    expect((await core.client.get(`/api/v1/users/${id}`)).status).toBe(404);
    expect((await core.client.anonymous().post('/api/v1/auth/login', { username: 'dina', password: 'dina-password-1234' })).status).toBe(401);
    // The name is free again; the old record stays (for the audit log), listed with includeDeleted.
    expect((await core.createUser('dina', ['viewer'])).id).not.toBe(id);
    const all = (await core.client.get('/api/v1/users?includeDeleted=true&q=dina')).body.items;
    expect(all.map((u: { deleted: boolean }) => u.deleted).sort()).toEqual([false, true]);
  });

  it('keeps the last administrator', async () => {
    const admin = (await core.client.get('/api/v1/me')).body.user;
    for (const [method, path, body] of [
      ['PATCH', `/api/v1/users/${admin.id}`, { roles: ['viewer'] }],
      ['PATCH', `/api/v1/users/${admin.id}`, { disabled: true }],
      ['DELETE', `/api/v1/users/${admin.id}`, undefined],
    ] as const) {
      const res = await core.client.request(method, path, body ? { body } : {});
      expect(res.status, `${method} ${JSON.stringify(body)}`).toBe(409);
      expect(res.body.error.message).toMatch(/last active administrator/);
    }
  });

  it('resets a password (ending sessions) and lets a user change their own', async () => {
    const { id, client } = await core.createUser('rita', ['viewer']);
    expect((await core.client.post(`/api/v1/users/${id}/password`, { password: 'rita-new-password-1' })).status).toBe(204);
    expect((await core.client.anonymous().post('/api/v1/auth/login', { username: 'rita', password: 'rita-password-1234' })).status).toBe(401);
    const login = await core.client.anonymous().post('/api/v1/auth/login', { username: 'rita', password: 'rita-new-password-1' });
    expect(login.status).toBe(200);
    const rita = client.withToken(login.body.accessToken);
    const wrong = await rita.post('/api/v1/me/password', { currentPassword: 'nope', newPassword: 'rita-third-password' });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.message).toBe('The current password is wrong');
    expect((await rita.post('/api/v1/me/password', { currentPassword: 'rita-new-password-1', newPassword: 'rita-third-password' })).status).toBe(204);
    // The refresh token of the old session no longer works.
    expect((await core.client.anonymous().post('/api/v1/auth/refresh', { refreshToken: login.body.refreshToken })).status).toBe(401);
    expect((await core.client.anonymous().post('/api/v1/auth/login', { username: 'rita', password: 'rita-third-password' })).status).toBe(200);
  });

  it('custom roles: made from declared permissions, applied at once to holders, deletable only when unused', async () => {
    const unknown = await core.client.post('/api/v1/roles', { name: 'Greeter', permissions: ['greetings:write', 'spells:cast'] });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.message).toContain('Unknown permission "spells:cast"');
    const role = await core.client.post('/api/v1/roles', { name: 'Greeter', permissions: ['greetings:read'] });
    expect(role.status).toBe(201);
    const { id, client } = await core.createUser('gus', [role.body.id]);
    expect((await client.get('/api/plugins/hello/greeting?name=A')).status).toBe(200);
    expect((await client.post('/api/plugins/hello/greetings', { name: 'A' })).status).toBe(403);
    // Changing the role changes what its holders may do, without signing in again.
    expect((await core.client.patch(`/api/v1/roles/${role.body.id}`, { permissions: ['greetings:read', 'greetings:write'] })).status).toBe(200);
    expect((await client.post('/api/plugins/hello/greetings', { name: 'A' })).status).toBe(200);
    expect((await core.client.delete(`/api/v1/roles/${role.body.id}`)).status).toBe(409);
    expect((await core.client.patch('/api/v1/roles/viewer', { permissions: [] })).status).toBe(409);
    expect((await core.client.patch(`/api/v1/users/${id}`, { roles: ['viewer'] })).status).toBe(200);
    expect((await core.client.delete(`/api/v1/roles/${role.body.id}`)).status).toBe(204);
    const roles = (await core.client.get('/api/v1/roles')).body.items;
    expect(roles.slice(0, 3).map((r: { name: string }) => r.name)).toEqual(['Admin', 'Operator', 'Viewer']);
    expect(roles.find((r: { id: string }) => r.id === 'viewer').permissions).toContain('greetings:read');
    const catalog = (await core.client.get('/api/v1/permissions')).body.items;
    expect(catalog.find((p: { id: string }) => p.id === 'greetings:write')).toMatchObject({ owner: 'hello', defaultRoles: ['operator'] });
  });

  it('teams: members and their team roles; a non-manager sees only their own teams', async () => {
    const t = (await core.client.post('/api/v1/teams', { name: 'nlp' })).body;
    const { id, client } = await core.createUser('nico', ['viewer'], { teams: ['default'] });
    expect((await core.client.put(`/api/v1/teams/${t.id}/members/${id}`, { roles: ['Operator'] })).status).toBe(200);
    const team = (await core.client.get(`/api/v1/teams/${t.id}`)).body;
    expect(team.members).toEqual([{ id, username: 'nico', displayName: null, disabled: false, roles: ['operator'] }]);
    const visible = (await client.get('/api/v1/teams')).body.items.map((x: { name: string }) => x.name).sort();
    expect(visible).toEqual(['default', 'nlp']);
    expect((await client.get('/api/v1/teams/' + (await core.client.get('/api/v1/teams?q=vision')).body.items[0].id)).status).toBe(404);
    expect((await core.client.delete(`/api/v1/teams/${t.id}/members/${id}`)).status).toBe(204);
    expect((await client.get('/api/v1/me')).body.teams.map((x: { name: string }) => x.name)).toEqual(['default']);
    expect((await core.client.delete('/api/v1/teams/default')).status).toBe(409);
    expect((await core.client.post('/api/v1/teams', { name: 'NLP' })).status).toBe(409);
  });

  it('API tokens: shown once, scoped to a subset of the owner’s permissions, revocable at once, last use recorded', async () => {
    const { client } = await core.createUser('tess', ['operator']);
    const tooMuch = await client.post('/api/v1/tokens', { name: 'ci', permissions: ['users:manage'] });
    expect(tooMuch.status).toBe(403);
    const created = await client.post('/api/v1/tokens', { name: 'ci', permissions: ['greetings:read'], expiresInDays: 30 });
    expect(created.status).toBe(201);
    expect(created.body.token).toMatch(/^aip_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const bot = client.withToken(created.body.token);
    expect((await bot.get('/api/plugins/hello/greeting?name=A')).status).toBe(200);
    // Outside its scopes, though the owner holds it.
    expect((await bot.post('/api/plugins/hello/greetings', { name: 'A' })).status).toBe(403);
    // A token cannot make tokens.
    expect((await bot.post('/api/v1/tokens', { name: 'x', permissions: ['greetings:read'] })).status).toBe(403);
    const listed = (await client.get('/api/v1/tokens')).body.items;
    expect(listed).toHaveLength(1);
    expect(listed[0]).not.toHaveProperty('token');
    expect(JSON.stringify(listed)).not.toContain(created.body.token.slice(22));
    for (let i = 0; i < 50 && !(await client.get('/api/v1/tokens')).body.items[0].lastUsedAt; i++) await new Promise((r) => setTimeout(r, 20));
    expect((await client.get('/api/v1/tokens')).body.items[0].lastUsedAt).not.toBeNull();
    const stored = await core.core.database.knex('api_tokens').first();
    expect(JSON.stringify(stored)).not.toContain(created.body.token.slice(22));
    expect((await client.delete(`/api/v1/tokens/${created.body.id}`)).status).toBe(204);
    expect((await bot.get('/api/plugins/hello/greeting?name=A')).status).toBe(401);
    // Wrong secret, unknown id, malformed.
    for (const bad of [created.body.token.slice(0, -2) + 'xx', 'aip_0000000000000000_' + 'a'.repeat(43), 'aip_nope']) {
      expect((await client.withToken(bad).get('/api/v1/me')).status).toBe(401);
    }
  });
});

describe('sign-in throttling', () => {
  let core: TestCore;
  beforeAll(async () => {
    core = await startTestCore({ plugins: [] });
    await core.createUser('tom', ['viewer']);
  });
  afterAll(() => core?.stop());

  it('delays, then locks an account after repeated failures, and counts each failure', async () => {
    const anon = core.client.anonymous();
    const attempt = () => anon.post('/api/v1/auth/login', { username: 'tom', password: 'wrong-password-123' });
    for (let i = 0; i < 3; i++) expect((await attempt()).status).toBe(401);
    const wait = await attempt();
    expect(wait.status).toBe(429);
    expect(wait.body.error.code).toBe('rate_limited');
    expect(wait.body.error.message).toMatch(/^Too many failed sign-ins: wait \d+ s before trying again$/);
    expect(Number(wait.headers.get('retry-after'))).toBeGreaterThan(0);
    // Even the right password waits.
    expect((await anon.post('/api/v1/auth/login', { username: 'tom', password: 'tom-password-1234' })).status).toBe(429);
    // Lock: push the count to the limit as time passes.
    await core.core.database.knex('login_failures').where({ key: 'user:tom' }).update({ failures: 9, last_failure_at: new Date(Date.now() - 3600_000) });
    expect((await attempt()).status).toBe(401);
    const locked = await attempt();
    expect(locked.status).toBe(429);
    expect(locked.body.error.message).toMatch(/locked for \d+ s/);
    // After the lock the count starts again and the right password works.
    await core.core.database.knex('login_failures').where({ key: 'user:tom' }).update({ locked_until: new Date(Date.now() - 1000), last_failure_at: new Date(Date.now() - 3600_000) });
    await core.core.database.knex('login_failures').where('key', 'like', 'ip:%').delete();
    expect((await anon.post('/api/v1/auth/login', { username: 'tom', password: 'tom-password-1234' })).status).toBe(200);
    expect(await core.core.database.knex('login_failures').where({ key: 'user:tom' }).first()).toBeUndefined();
  });
});
