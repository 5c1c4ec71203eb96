// The route × role matrix over every route the running core serves (the core's and every plugin
// present in plugins/ and examples/), generated from its OpenAPI document so routes added later
// are covered without touching this file:
//   no credentials → 401; a role without the route's permission → 403; a role with it → neither;
//   public routes must be on the written list below; custom-auth routes refuse missing and wrong credentials.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestClient, type TestCore } from '@aiplat/testing';

/** Every public route, with why it is public. A public route not listed here fails the test. */
const PUBLIC_ROUTES: Record<string, string> = {
  'GET /api/v1/health': 'load balancers probe it',
  'GET /api/v1/openapi.json': 'an API description holds no data',
  'POST /api/v1/auth/login': 'how a caller gets credentials',
  'POST /api/v1/auth/refresh': 'the refresh token is the credential',
  'POST /api/v1/auth/logout': 'the refresh token is the credential',
  'GET /api/v1/auth/oidc': 'the sign-in page asks whether single sign-on is offered',
  'GET /api/v1/auth/oidc/start': 'signing in through the identity provider is how a browser gets credentials',
  'GET /api/v1/auth/oidc/callback': 'the identity provider’s answer (code and state) is the credential',
  'POST /api/v1/auth/oidc/exchange': 'the one-time code from the single sign-on callback is the credential',
};

interface Operation {
  method: string;
  path: string;
  auth: { permission?: string; public?: string; custom?: string };
  hasBody: boolean;
}

function operations(doc: { paths: Record<string, Record<string, { 'x-aiplat-auth': Operation['auth']; requestBody?: unknown }>> }): Operation[] {
  const out: Operation[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      out.push({ method: method.toUpperCase(), path, auth: op['x-aiplat-auth'], hasBody: op.requestBody !== undefined });
    }
  }
  return out;
}

/** A concrete URL for an OpenAPI path: every {param} becomes a value no object has. */
const concrete = (path: string) => path.replace(/\{[^}]+\}/g, 'no-such-thing');

async function call(client: TestClient, op: Operation) {
  return client.request(op.method, concrete(op.path), op.hasBody ? { body: {} } : {});
}

describe('route × role matrix', () => {
  let core: TestCore;
  let ops: Operation[];
  let nobody: TestClient;
  const holders = new Map<string, TestClient>();

  beforeAll(async () => {
    // The repository's own plugin folders, as a default start loads them.
    core = await startTestCore({ plugins: ['plugins', 'examples'] });
    ops = operations((await core.client.get('/api/v1/openapi.json')).body);
    // A role with no permission at all, and for each permission a role with only that one.
    const empty = await core.client.post('/api/v1/roles', { name: 'Nothing', permissions: [] });
    expect(empty.status).toBe(201);
    nobody = (await core.createUser('nobody', [empty.body.id])).client;
    const permissions = [...new Set(ops.map((o) => o.auth.permission).filter((p): p is string => !!p))];
    for (const [i, permission] of permissions.entries()) {
      const role = await core.client.post('/api/v1/roles', { name: `only-${i}`, permissions: [permission] });
      expect(role.status, permission).toBe(201);
      holders.set(permission, (await core.createUser(`holder-${i}`, [role.body.id])).client);
    }
  }, 240_000);
  afterAll(() => core?.stop());

  it('covers the core and the plugins', () => {
    const paths = ops.map((o) => o.path);
    expect(paths).toContain('/api/v1/users');
    expect(paths).toContain('/api/plugins/hello/greetings');
    expect(ops.length).toBeGreaterThan(40);
  });

  it('has no public route that is not on the written list', () => {
    const publicRoutes = ops.filter((o) => o.auth.public !== undefined).map((o) => `${o.method} ${o.path}`).sort();
    expect(publicRoutes).toEqual(Object.keys(PUBLIC_ROUTES).sort());
  });

  it('answers 401 without credentials and with a bad token on every permission route', async () => {
    const failures: string[] = [];
    for (const op of ops.filter((o) => o.auth.permission)) {
      const anonymous = await call(core.client.anonymous(), op);
      if (anonymous.status !== 401) failures.push(`${op.method} ${op.path} anonymous → ${anonymous.status}`);
      const forged = await call(core.client.withToken('eyJhbGciOiJIUzI1NiJ9.e30.forged'), op);
      if (forged.status !== 401) failures.push(`${op.method} ${op.path} forged token → ${forged.status}`);
    }
    expect(failures).toEqual([]);
  });

  it('answers 403 to a role without the permission (audited as denied) and lets a role with it through', async () => {
    const failures: string[] = [];
    const deniedRequests = new Map<string, string>();
    for (const op of ops.filter((o) => o.auth.permission)) {
      const denied = await call(nobody, op);
      if (denied.status !== 403) failures.push(`${op.method} ${op.path} without ${op.auth.permission} → ${denied.status}`);
      // A HEAD answer carries no body (the tus upload offset route is one): its status and audit row tell.
      // OpenAI-style routes (the /v1 alias) answer OpenAI's error shape, which has no details: the message names it.
      else if (op.method !== 'HEAD' && denied.body.error.details?.permission !== op.auth.permission && !(denied.body.error.type === 'invalid_request_error' && String(denied.body.error.message).includes(`"${op.auth.permission}"`)))
        failures.push(`${op.method} ${op.path}: 403 does not name ${op.auth.permission}`);
      else deniedRequests.set(denied.headers.get('x-request-id')!, `${op.method} ${op.path}`);
      const allowed = await call(holders.get(op.auth.permission!)!, op);
      if (allowed.status === 401 || allowed.status === 403) failures.push(`${op.method} ${op.path} with ${op.auth.permission} → ${allowed.status} ${allowed.text.slice(0, 120)}`);
      if (allowed.status >= 500) failures.push(`${op.method} ${op.path} with ${op.auth.permission} → ${allowed.status} ${allowed.text.slice(0, 120)}`);
    }
    expect(failures).toEqual([]);
    // Every refusal left a "denied" row naming the caller.
    const rows = (await core.core.database
      .knex('audit_log')
      .whereIn('request_id', [...deniedRequests.keys()])
      .select('request_id', 'outcome', 'actor_name', 'status')) as { request_id: string; outcome: string; actor_name: string; status: number }[];
    const audited = new Map(rows.map((r) => [r.request_id, r]));
    const missing = [...deniedRequests].filter(([id]) => audited.get(id)?.outcome !== 'denied' || audited.get(id)?.actor_name !== 'nobody' || audited.get(id)?.status !== 403);
    expect(missing.map(([, route]) => route)).toEqual([]);
  }, 120_000);

  it('checks custom-auth routes with their own credentials: none or wrong → 401', async () => {
    const failures: string[] = [];
    for (const op of ops.filter((o) => o.auth.custom !== undefined)) {
      const none = await call(core.client.anonymous(), op);
      if (none.status !== 401) failures.push(`${op.method} ${op.path} without credentials → ${none.status}`);
      const wrong = await call(core.client.withToken('wrong-key'), op);
      if (wrong.status !== 401) failures.push(`${op.method} ${op.path} with a wrong key → ${wrong.status}`);
    }
    expect(failures).toEqual([]);
  });
});
