// OIDC single sign-on end to end against a real OpenID provider (oidc-provider, started here) over
// plain HTTP, following every redirect by hand and filling the provider's login and consent
// forms: just-in-time users with mapped roles and teams, the mapping applied again at the next
// sign-in, single-use state and exchange codes, the browser binding, refusals (denied at the
// provider, disabled account, unreachable provider), and no password sign-in for SSO accounts
// (identity issue item 3). The browser login through the same provider: web-shell/test/sso.e2e.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestClient, type TestCore } from '@aiplat/testing';
import { readOidcConfig } from '../src/config/oidc-config.js';
import { CookieJar, request, startTestIdp, walkIdp, type TestIdp } from './helpers/oidc-idp.js';

const CALLBACK = '/api/v1/auth/oidc/callback';

describe('OIDC single sign-on', () => {
  let idp: TestIdp;
  let core: TestCore;
  let unreachable: TestCore;
  let off: TestCore;

  beforeAll(async () => {
    idp = await startTestIdp();
    const { config: oidc, problems } = readOidcConfig(
      {
        AIPLAT_OIDC_ISSUER: idp.issuer,
        AIPLAT_OIDC_CLIENT_ID: idp.clientId,
        AIPLAT_OIDC_CLIENT_SECRET: idp.clientSecret,
        AIPLAT_OIDC_SCOPES: 'openid profile email groups',
        AIPLAT_OIDC_LABEL: 'Test IdP',
      },
      {
        defaultRoles: ['Viewer'],
        mappings: [
          { group: 'ml-ops', roles: ['Operator'], teams: [{ team: 'vision', roles: ['Operator'] }] },
          { group: 'nlp', teams: ['nlp'] },
          { claim: { name: 'department', value: 'research' }, teams: [{ team: 'research', roles: ['Viewer'] }] },
        ],
      },
      'test',
    );
    expect(problems).toEqual([]);
    // The redirect URI is the core's own URL (no PUBLIC_URL): register it once the core listens.
    // The second core's issuer is a port where nothing listens.
    [core, unreachable, off] = await Promise.all([
      startTestCore({ config: { oidc } }),
      startTestCore({ config: { oidc: { ...oidc!, issuer: 'http://127.0.0.1:9' } } }),
      startTestCore(),
    ]);
    idp.register(`${core.url}${CALLBACK}`);
    idp.accounts.set('alice', { preferred_username: 'alice', name: 'Alice Doe', email: 'alice@example.com', groups: ['ml-ops', 'nlp'], department: 'research' });
    idp.accounts.set('mallory', { preferred_username: 'admin', name: 'Not The Admin', groups: [] });
  });
  afterAll(async () => {
    await Promise.all([core?.stop(), unreachable?.stop(), off?.stop()]);
    await idp?.stop();
  });

  /** Start at the core, sign in at the provider; the callback address (not yet requested). */
  async function toCallback(jar: CookieJar, login: string, redirect = '/', options: { abort?: boolean } = {}): Promise<URL> {
    return walkIdp(jar, `${core.url}/api/v1/auth/oidc/start?redirect=${encodeURIComponent(redirect)}`, login, (next) => next.pathname === CALLBACK, options);
  }

  /** The core's answer to a callback address: where it sends the browser. */
  async function callback(jar: CookieJar, url: URL): Promise<URL> {
    const res = await request(jar, url);
    expect(res.status).toBe(302);
    return new URL(res.headers.get('location')!, core.url);
  }

  async function exchange(code: string) {
    return core.client.anonymous().post('/api/v1/auth/oidc/exchange', { code });
  }

  /** A whole sign-in: the shell's /login/sso address and a client signed in with the exchanged tokens. */
  async function signIn(login: string, redirect = '/'): Promise<{ landing: URL; client: TestClient }> {
    const jar = new CookieJar();
    const landing = await callback(jar, await toCallback(jar, login, redirect));
    expect(landing.pathname, landing.href).toBe('/login/sso');
    const tokens = await exchange(landing.searchParams.get('code')!);
    expect(tokens.status, tokens.text).toBe(200);
    return { landing, client: core.client.withToken(tokens.body.accessToken) };
  }

  const teamNames = (me: { teams: { name: string; roles: string[] }[] }) => Object.fromEntries(me.teams.map((t) => [t.name, t.roles]));

  it('tells the sign-in page that single sign-on is offered, and sends the browser to the provider with state, nonce and PKCE', async () => {
    expect((await core.client.anonymous().get('/api/v1/auth/oidc')).body).toEqual({ enabled: true, label: 'Test IdP' });
    const res = await fetch(`${core.url}/api/v1/auth/oidc/start?redirect=/plugins`, { redirect: 'manual' });
    expect(res.status).toBe(302);
    const to = new URL(res.headers.get('location')!);
    expect(`${to.origin}${to.pathname}`).toBe(`${idp.issuer}/auth`);
    expect(Object.fromEntries(to.searchParams)).toMatchObject({
      client_id: idp.clientId,
      response_type: 'code',
      redirect_uri: `${core.url}${CALLBACK}`,
      scope: 'openid profile email groups',
      code_challenge_method: 'S256',
    });
    for (const p of ['state', 'nonce', 'code_challenge']) expect(to.searchParams.get(p)!.length).toBeGreaterThanOrEqual(32);
    expect(res.headers.get('set-cookie')).toMatch(/^aiplat_sso=[\w-]+; Path=\/api\/v1\/auth\/oidc; Max-Age=600; HttpOnly; SameSite=Lax$/);
  });

  it('creates the user just in time with the mapped roles and teams (creating missing teams), and hands over tokens without a token in any URL', async () => {
    const jar = new CookieJar();
    const atCallback = await toCallback(jar, 'alice', '/plugins');
    const landing = await callback(jar, atCallback);
    expect(landing.pathname).toBe('/login/sso');
    expect(landing.searchParams.get('redirect')).toBe('/plugins');
    expect(landing.href).not.toMatch(/eyJ/); // no JWT anywhere in the address
    const tokens = await exchange(landing.searchParams.get('code')!);
    expect(tokens.status).toBe(200);
    expect(tokens.body).toMatchObject({ tokenType: 'Bearer', expiresIn: 900 });
    const alice = core.client.withToken(tokens.body.accessToken);
    const me = (await alice.get('/api/v1/me')).body;
    expect(me.user).toMatchObject({ username: 'alice', displayName: 'Alice Doe', email: 'alice@example.com', source: 'oidc' });
    expect([...me.user.roles].sort()).toEqual(['operator', 'viewer']);
    expect(teamNames(me)).toEqual({ vision: ['operator'], nlp: [], research: ['viewer'] });
    // The refresh token works like a password sign-in's.
    expect((await core.client.anonymous().post('/api/v1/auth/refresh', { refreshToken: tokens.body.refreshToken })).status).toBe(200);
    // The teams the mapping named were created; the user record says where it came from.
    const teams = (await core.client.get('/api/v1/teams')).body.items.map((t: { name: string }) => t.name);
    expect(teams).toEqual(expect.arrayContaining(['vision', 'nlp', 'research']));
    const listed = (await core.client.get('/api/v1/users?q=alice')).body.items;
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ source: 'oidc', username: 'alice' });
    // The sign-in is in the audit log, with what it changed (never a token).
    const rows = (await core.core.database.knex('audit_log').where({ action: 'core:auth.login' }).orderBy('id')) as { details: Record<string, unknown> | string }[];
    const details = rows.map((r) => (typeof r.details === 'string' ? (JSON.parse(r.details) as Record<string, unknown>) : r.details)).filter((d) => d.method === 'oidc');
    expect(details).toHaveLength(1);
    expect(details[0]).toMatchObject({ subject: 'alice', created: true, issuer: idp.issuer });
    expect(JSON.stringify(rows)).not.toContain(tokens.body.refreshToken);
  });

  it('applies the mapping again at the next sign-in: roles follow the groups, SSO-made memberships go, a manual one stays', async () => {
    const aliceId = (await core.client.get('/api/v1/users?q=alice')).body.items[0].id;
    const manual = await core.client.post('/api/v1/teams', { name: 'hand-picked' });
    expect((await core.client.put(`/api/v1/teams/${manual.body.id}/members/${aliceId}`, { roles: ['Operator'] })).status).toBe(200);
    idp.accounts.set('alice', { preferred_username: 'alice', name: 'Alice Smith', email: 'alice@example.com', groups: ['nlp'], department: 'sales' });
    const { client } = await signIn('alice');
    const me = (await client.get('/api/v1/me')).body;
    expect(me.user).toMatchObject({ id: aliceId, username: 'alice', displayName: 'Alice Smith', roles: ['viewer'] });
    expect(teamNames(me)).toEqual({ nlp: [], 'hand-picked': ['operator'] });
    expect(me.permissions).not.toContain('users:manage');
    // Still one account for the person.
    expect((await core.client.get('/api/v1/users?q=alice')).body.items).toHaveLength(1);
  });

  it('spends the state at the first use: a replayed, a forged or another browser’s callback goes back to the sign-in page with an error', async () => {
    const jar = new CookieJar();
    const atCallback = await toCallback(jar, 'alice');
    // A forged state: refused, and the real one is not spent by it.
    const forged = new URL(atCallback);
    forged.searchParams.set('state', 'not-the-state-we-sent-0123456789');
    expect((await callback(jar, forged)).href).toBe(`${core.url}/login?sso_error=state`);
    // The right state from another browser (no binding cookie): refused, and spent.
    expect((await callback(new CookieJar(), atCallback)).href).toBe(`${core.url}/login?sso_error=state`);
    expect((await callback(jar, atCallback)).href).toBe(`${core.url}/login?sso_error=state`);
    // A complete sign-in, then the same callback again.
    const jar2 = new CookieJar();
    const fresh = await toCallback(jar2, 'alice');
    expect((await callback(jar2, fresh)).pathname).toBe('/login/sso');
    expect((await callback(jar2, fresh)).href).toBe(`${core.url}/login?sso_error=state`);
    // No state at all.
    expect((await callback(jar2, new URL(`${core.url}${CALLBACK}?code=abc`))).href).toBe(`${core.url}/login?sso_error=state`);
    const refusals = core.logs.filter((l) => l.msg === 'single sign-on refused').map((l) => l.reason);
    expect(refusals).toEqual(
      expect.arrayContaining([
        'the state is unknown, or was used already',
        'the sign-in was started in another browser (or its cookie was lost)',
        'the answer carries no state',
      ]),
    );
  });

  it('sends a person who cancels at the provider back to the sign-in page (access_denied)', async () => {
    const jar = new CookieJar();
    const atCallback = await toCallback(jar, 'alice', '/', { abort: true });
    expect(atCallback.searchParams.get('error')).toBe('access_denied');
    expect((await callback(jar, atCallback)).href).toBe(`${core.url}/login?sso_error=denied`);
    expect(core.logs.some((l) => l.msg === 'single sign-on refused' && String(l.reason).startsWith('the identity provider answered "access_denied"'))).toBe(true);
  });

  it('accepts an exchange code once: a replay answers 401', async () => {
    const jar = new CookieJar();
    const landing = await callback(jar, await toCallback(jar, 'alice'));
    const code = landing.searchParams.get('code')!;
    expect((await exchange(code)).status).toBe(200);
    const again = await exchange(code);
    expect(again.status).toBe(401);
    expect(again.body.error.message).toBe('The single sign-on code is not valid: it was used already or has expired. Sign in again.');
    expect((await exchange('made-up-code')).status).toBe(401);
  });

  it('never links to a local account by name: a taken username gets a suffix, and the log says so', async () => {
    const { client } = await signIn('mallory');
    const me = (await client.get('/api/v1/me')).body;
    expect(me.user).toMatchObject({ username: 'admin-sso', source: 'oidc', roles: ['viewer'] });
    const admin = (await core.client.get('/api/v1/me')).body.user;
    expect(admin).toMatchObject({ username: 'admin', source: 'local' });
    expect(admin.id).not.toBe(me.user.id);
    const line = core.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('single sign-on: the username is taken by another account'));
    expect(line).toMatchObject({ wanted: 'admin', username: 'admin-sso', takenBy: 'a local account' });
    // The next sign-in keeps the suffixed name.
    expect((await (await signIn('mallory')).client.get('/api/v1/me')).body.user.username).toBe('admin-sso');
  });

  it('refuses password sign-in and password reset for SSO accounts, with a clear message', async () => {
    const login = await core.client.anonymous().post('/api/v1/auth/login', { username: 'alice', password: 'alice-password-1234' });
    expect(login.status).toBe(401);
    expect(login.body.error.message).toContain('single sign-on');
    const aliceId = (await core.client.get('/api/v1/users?q=alice')).body.items[0].id;
    const reset = await core.client.post(`/api/v1/users/${aliceId}/password`, { password: 'a-new-password-1234' });
    expect(reset.status).toBe(409);
    expect(reset.body.error.message).toBe('alice signs in through single sign-on and has no password here');
  });

  it('refuses a disabled account at the callback and at the exchange', async () => {
    const aliceId = (await core.client.get('/api/v1/users?q=alice')).body.items[0].id;
    // A code handed out before the account was disabled no longer works.
    const jar = new CookieJar();
    const pending = (await callback(jar, await toCallback(jar, 'alice'))).searchParams.get('code')!;
    expect((await core.client.patch(`/api/v1/users/${aliceId}`, { disabled: true })).status).toBe(200);
    expect((await exchange(pending)).status).toBe(401);
    const jar2 = new CookieJar();
    expect((await callback(jar2, await toCallback(jar2, 'alice'))).href).toBe(`${core.url}/login?sso_error=disabled`);
    expect((await core.client.patch(`/api/v1/users/${aliceId}`, { disabled: false })).status).toBe(200);
    await signIn('alice');
  });

  it('answers 503 with a clear message when the provider cannot be reached (a browser goes back to the sign-in page)', async () => {
    const res = await unreachable.client.anonymous().get('/api/v1/auth/oidc/start');
    expect(res.status).toBe(503);
    expect(res.body.error.message).toMatch(/^Single sign-on is not available: the identity provider at http:\/\/127\.0\.0\.1:9 cannot be reached/);
    const browser = await fetch(`${unreachable.url}/api/v1/auth/oidc/start`, { redirect: 'manual', headers: { accept: 'text/html' } });
    expect(browser.status).toBe(302);
    expect(browser.headers.get('location')).toBe('/login?sso_error=unavailable');
  });

  it('says single sign-on is off when it is not configured', async () => {
    expect((await off.client.anonymous().get('/api/v1/auth/oidc')).body).toEqual({ enabled: false, label: null });
    const start = await off.client.anonymous().get('/api/v1/auth/oidc/start');
    expect(start.status).toBe(404);
    expect(start.body.error.message).toBe('Single sign-on is not configured on this server (set AIPLAT_OIDC_ISSUER and AIPLAT_OIDC_CLIENT_ID)');
  });

  it('never logs the client secret', () => {
    expect(JSON.stringify(core.logs)).not.toContain(idp.clientSecret);
  });
});
