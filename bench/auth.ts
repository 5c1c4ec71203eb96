/**
 * `npm run bench:auth`: what authentication and authorization cost per request, in microseconds,
 * measured in process (no HTTP), median of several rounds:
 *
 * - verifying a new access token (HS256 signature, claims, principal) — the first request of a session;
 * - a cached access token (every later request until it expires): map lookup + user still active;
 * - the RBAC check `identity.can(principal, permission)` for a global role, a team role and an admin;
 * - a cached personal API token (scopes + owner still active).
 *
 *   npm run bench:auth -- [--iterations 200000] [--rounds 5]
 */
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import type { Knex } from 'knex';
import type { Logger, PermissionDeclaration } from '@aiplat/plugin-sdk';
import { deriveKey, TokenService } from '../core/src/auth/tokens.js';
import { IdentityService } from '../core/src/auth/identity.js';
import { ApiTokens } from '../core/src/auth/api-tokens.js';
import { corePermissions } from '../core/src/auth/permissions.js';

const { values } = parseArgs({ options: { iterations: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '5' } } });
const iterations = Number(values.iterations);
const rounds = Number(values.rounds);

// An identity of 1,000 users in 50 teams, read from an in-memory stand-in of the four tables
// (the service reads them once at start and after changes; the per-request path never queries).
const users = Array.from({ length: 1000 }, (_, i) => ({ id: `u${i}`, username: `user${i}`, roles: JSON.stringify([i === 0 ? 'admin' : 'viewer']), disabled_at: null, default_team_id: `t${i % 50}` }));
const members = users.map((u, i) => ({ team_id: `t${i % 50}`, user_id: u.id, roles: JSON.stringify(['operator']) }));
const tables: Record<string, unknown[]> = {
  users,
  roles: [
    { id: 'admin', name: 'Admin', description: null, builtin: true, permissions: '[]' },
    { id: 'operator', name: 'Operator', description: null, builtin: true, permissions: '[]' },
    { id: 'viewer', name: 'Viewer', description: null, builtin: true, permissions: '[]' },
  ],
  team_members: members,
  teams: Array.from({ length: 50 }, (_, i) => ({ id: `t${i}`, name: `team${i}` })),
};
const query = (rows: unknown[]) => ({ whereNull: () => query(rows), select: async () => rows });
const db = ((table: string) => query(tables[table] ?? [])) as unknown as Knex;
const silent = { info() {}, warn() {}, error() {}, debug() {}, child: () => silent } as unknown as Logger;

const declarations: PermissionDeclaration[] = [
  ...corePermissions,
  ...Array.from({ length: 60 }, (_, i) => ({ id: `plugin${i}:read`, title: { en: 'x', 'zh-CN': 'x' }, defaultRoles: ['viewer', 'operator'] })),
  ...Array.from({ length: 60 }, (_, i) => ({ id: `plugin${i}:write`, title: { en: 'x', 'zh-CN': 'x' }, defaultRoles: ['operator'] })),
];
const identity = new IdentityService(() => db, silent);
identity.setDeclarations(declarations);
await identity.load();

const tokens = new TokenService(deriveKey('bench-secret-0123456789abcdef0123456789', 'jwt'), 900, (user) => identity.principal(user));
const token = await tokens.signAccess({ id: 'u7', username: 'user7', roles: ['viewer'] });

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function measure(label: string, n: number, fn: () => unknown | Promise<unknown>): Promise<[string, number]> {
  const perRound: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const started = performance.now();
    for (let i = 0; i < n; i++) {
      const v = fn();
      if (v instanceof Promise) await v;
    }
    perRound.push(((performance.now() - started) * 1000) / n);
  }
  return [label, median(perRound)];
}

const results: [string, number][] = [];
// A new token each time: clear the cache so the signature is checked.
results.push(
  await measure('verify a new access token (HS256 + claims)', Math.max(2000, Math.floor(iterations / 50)), async () => {
    (tokens as unknown as { cache: Map<string, unknown> }).cache.clear();
    if (!(await tokens.verifyAccess(token))) throw new Error('token refused');
  }),
);
await tokens.verifyAccess(token);
results.push(await measure('cached access token + user active', iterations, () => tokens.cached(token) && identity.isActive('u7')));
const viewer = identity.principal({ id: 'u7', username: 'user7' });
const admin = identity.principal({ id: 'u0', username: 'user0' });
results.push(await measure('RBAC check, global viewer permission', iterations, () => identity.can(viewer, 'plugin3:read')));
results.push(await measure('RBAC check, team operator permission', iterations, () => identity.can(viewer, 'plugin3:write')));
results.push(await measure('RBAC check, denied', iterations, () => identity.can(viewer, 'users:manage')));
results.push(await measure('RBAC check, admin', iterations, () => identity.can(admin, 'users:manage')));
const apiTokens = new ApiTokens(() => db, identity);
const scoped = identity.principal({ id: 'u7', username: 'user7' }, 'token', { id: 'tok', scopes: ['plugin3:read'] });
(apiTokens as unknown as { cache: Map<string, unknown> }).cache.set('aip_x', { principal: scoped, until: Date.now() + 3600_000, expiresAt: null });
results.push(await measure('cached API token + scope check', iterations, () => apiTokens.cached('aip_x') && identity.can(scoped, 'plugin3:read')));

console.log(`\nauthentication and authorization cost (Node ${process.version}, median of ${rounds} rounds)\n`);
for (const [label, us] of results) console.log(`  ${label.padEnd(46)} ${us < 1 ? us.toFixed(3) : us.toFixed(1)} µs`);
console.log('');
