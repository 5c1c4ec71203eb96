/**
 * The identity API: the signed-in user (`/me`), users, roles and the permission catalog, teams
 * and their members, personal API tokens. Every change reloads the identity service here and,
 * through the `identity` event, on every other core replica.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { AiplatError, json, reply, type PermissionDeclaration, type RouteDefinition, type RouteContext } from '@aiplat/plugin-sdk';
import type { AuthService } from './auth-service.js';
import type { IdentityService } from './identity.js';
import { BUILTIN_ROLES } from './identity.js';
import { hashPassword, verifyPassword } from './passwords.js';
import { tokenView, type ApiTokenRow, type ApiTokens } from './api-tokens.js';

export interface IdentityRouteOptions {
  identity: IdentityService;
  auth: AuthService;
  apiTokens: ApiTokens;
  /** Reload this replica and tell the others (after the change commits). */
  changed(kind: 'users' | 'roles' | 'teams' | 'tokens'): Promise<void>;
  passwordMinLength: number;
  /** Which plugin declared each permission (`core` for the core's). */
  permissionOwners(): Map<string, string>;
}

const USERNAME = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$', description: '2–64 letters, digits, ".", "_", "@" or "-"' };
const NAME = { type: 'string', pattern: '^[\\p{L}\\p{N}][\\p{L}\\p{N} _.-]{0,39}$', description: '1–40 letters, digits, spaces, ".", "_" or "-"' };
const PERMISSION = { type: 'string', pattern: '^[a-z][a-z0-9-]*(\\.[a-z][a-z0-9-]*)*:[a-z][a-z0-9-]*$', maxLength: 100 };
const idParams = { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 100 } } };
const listQuery = {
  type: 'object',
  properties: {
    q: { type: 'string', maxLength: 100, description: 'substring of the name' },
    limit: { type: 'integer', minimum: 1, maximum: 200, default: 50 },
    cursor: { type: 'string', maxLength: 200 },
  },
};

interface UserRow {
  id: string;
  username: string;
  display_name: string | null;
  email: string | null;
  roles: string[] | string;
  source: string;
  default_team_id: string | null;
  disabled_at: Date | string | null;
  deleted_at: Date | string | null;
  created_at: Date | string;
  last_login_at: Date | string | null;
}

const iso = (v: Date | string | null | undefined) => (v ? new Date(v).toISOString() : null);
const list = (v: string[] | string): string[] => (Array.isArray(v) ? v : (JSON.parse(v) as string[]));
const encodeCursor = (value: string) => Buffer.from(value).toString('base64url');
function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  const value = Buffer.from(cursor, 'base64url').toString();
  if (!value) throw new AiplatError('validation_failed', 'cursor: not a cursor this list gave out');
  return value;
}

export function identityRoutes(options: IdentityRouteOptions): RouteDefinition[] {
  const { identity, auth, apiTokens, changed } = options;

  function checkPassword(password: string, username: string): void {
    const problems: string[] = [];
    if ([...password].length < options.passwordMinLength) problems.push(`at least ${options.passwordMinLength} characters`);
    if (password.toLowerCase() === username.toLowerCase()) problems.push('not the username');
    if (/^(.)\1*$/.test(password)) problems.push('not one character repeated');
    if (problems.length) throw new AiplatError('validation_failed', `The password must have ${problems.join(', ')}`, { field: 'password' });
  }

  /** Role ids from ids or names (`Viewer`), refusing unknown ones with the known names. */
  function resolveRoles(names: string[]): string[] {
    const out: string[] = [];
    for (const name of names) {
      const role = identity.resolveRole(name);
      if (!role) {
        throw new AiplatError('validation_failed', `Unknown role "${name}" (roles: ${identity.allRoles().map((r) => r.name).join(', ')})`, { field: 'roles', role: name });
      }
      if (!out.includes(role.id)) out.push(role.id);
    }
    return out;
  }

  async function resolveTeams(db: Knex, teams: (string | { team: string; roles?: string[] })[]): Promise<{ id: string; roles: string[] }[]> {
    const out: { id: string; roles: string[] }[] = [];
    for (const entry of teams) {
      const ref = typeof entry === 'string' ? entry : entry.team;
      const row = (await db('teams').where({ id: ref }).orWhere({ name: ref }).first('id')) as { id: string } | undefined;
      if (!row) throw new AiplatError('validation_failed', `Unknown team "${ref}"`, { field: 'teams', team: ref });
      out.push({ id: row.id, roles: typeof entry === 'string' ? [] : resolveRoles(entry.roles ?? []) });
    }
    return out;
  }

  function userView(row: UserRow) {
    return {
      id: row.id,
      username: row.username,
      displayName: row.display_name,
      email: row.email,
      roles: list(row.roles),
      teams: identity.teamRolesOf(row.id),
      defaultTeam: row.default_team_id,
      source: row.source,
      disabled: row.disabled_at !== null,
      deleted: row.deleted_at !== null,
      createdAt: iso(row.created_at),
      lastLoginAt: iso(row.last_login_at),
    };
  }

  async function loadUser(db: Knex, id: string): Promise<UserRow> {
    const row = (await db('users').where({ id }).whereNull('deleted_at').first()) as UserRow | undefined;
    if (!row) throw new AiplatError('not_found', `No user with id "${id}"`, { id });
    return row;
  }

  /** The last active administrator cannot lose the role, be disabled or deleted. */
  function guardLastAdmin(userId: string, action: string): void {
    const admins = identity.activeAdmins();
    if (admins.length === 1 && admins[0] === userId) {
      throw new AiplatError('conflict', `Cannot ${action}: this is the last active administrator. Make another user an administrator first.`);
    }
  }

  const after = (ctx: RouteContext<any, any, any>, kind: 'users' | 'roles' | 'teams' | 'tokens') => ctx.afterCommit(() => changed(kind));

  const userBodyProperties = {
    displayName: { type: ['string', 'null'], maxLength: 100 },
    email: { type: ['string', 'null'], maxLength: 200, format: 'email' },
    roles: { type: 'array', maxItems: 20, items: { type: 'string', minLength: 1, maxLength: 40 }, description: 'global roles by id or name (Admin, Operator, Viewer or a custom role)' },
    teams: {
      type: 'array',
      maxItems: 100,
      description: 'teams by id or name, optionally with the roles held in that team',
      items: {
        oneOf: [
          { type: 'string', minLength: 1, maxLength: 100 },
          { type: 'object', required: ['team'], properties: { team: { type: 'string', minLength: 1, maxLength: 100 }, roles: { type: 'array', maxItems: 20, items: { type: 'string', minLength: 1, maxLength: 40 } } } },
        ],
      },
    },
  };

  async function setTeams(db: Knex, userId: string, teams: { id: string; roles: string[] }[]): Promise<void> {
    await db('team_members').where({ user_id: userId }).delete();
    if (teams.length) await db('team_members').insert(teams.map((t) => ({ team_id: t.id, user_id: userId, roles: JSON.stringify(t.roles) })));
  }

  const routes: RouteDefinition[] = [
    // ---- me ------------------------------------------------------------------------------
    {
      method: 'GET',
      path: '/me',
      summary: 'The signed-in user, their teams and effective permissions (the shell hides what they cannot do)',
      tags: ['identity'],
      permission: 'self:read',
      handler: async (ctx) => {
        const principal = ctx.user!;
        const row = (await ctx.db('users').where({ id: principal.id }).first()) as UserRow | undefined;
        if (!row) throw new AiplatError('unauthenticated');
        const perms = identity.permissionsOf(principal.id);
        const scoped = (ps: string[]) => (principal.via === 'token' ? ps.filter((p) => principal.scopes?.includes(p)) : ps);
        return {
          user: { id: row.id, username: row.username, displayName: row.display_name, email: row.email, roles: list(row.roles), source: row.source },
          teams: identity.teamRolesOf(principal.id),
          defaultTeam: row.default_team_id,
          permissions: scoped(perms.all),
          teamPermissions: Object.fromEntries(Object.entries(perms.byTeam).map(([t, ps]) => [t, scoped(ps)])),
          via: principal.via,
        };
      },
    },
    {
      method: 'POST',
      path: '/me/password',
      summary: 'Change my own password (every session of mine ends: sign in again)',
      tags: ['identity'],
      permission: 'self:read',
      body: json({
        type: 'object',
        required: ['currentPassword', 'newPassword'],
        properties: { currentPassword: { type: 'string', minLength: 1, maxLength: 1024 }, newPassword: { type: 'string', minLength: 1, maxLength: 1024 } },
      }),
      handler: async (ctx) => {
        const principal = ctx.user!;
        if (principal.via !== 'session') throw new AiplatError('forbidden', 'Change your password from a signed-in session, not with an API token');
        const row = (await ctx.db('users').where({ id: principal.id }).first('password_hash', 'source', 'username')) as
          | { password_hash: string | null; source: string; username: string }
          | undefined;
        if (!row?.password_hash) throw new AiplatError('conflict', 'This account signs in through single sign-on and has no password here');
        if (!(await verifyPassword(row.password_hash, ctx.body.currentPassword))) {
          throw new AiplatError('validation_failed', 'The current password is wrong', { field: 'currentPassword' });
        }
        checkPassword(ctx.body.newPassword, row.username);
        await ctx.db('users')
          .where({ id: principal.id })
          .update({ password_hash: await hashPassword(ctx.body.newPassword), password_changed_at: ctx.db.fn.now(), updated_at: ctx.db.fn.now() });
        await auth.revokeSessions(ctx.db, principal.id);
      },
    },

    // ---- users ---------------------------------------------------------------------------
    {
      method: 'GET',
      path: '/users',
      summary: 'Users, by username',
      tags: ['identity'],
      permission: 'users:read',
      query: { ...listQuery, properties: { ...listQuery.properties, includeDeleted: { type: 'boolean', default: false } } },
      handler: async (ctx) => {
        const { q, limit, cursor, includeDeleted } = ctx.query as { q?: string; limit: number; cursor?: string; includeDeleted: boolean };
        const after = decodeCursor(cursor);
        const query = ctx.db('users').orderBy('username').limit(limit + 1);
        if (!includeDeleted) query.whereNull('deleted_at');
        if (q) query.where((w) => w.whereILike('username', `%${q}%`).orWhereILike('display_name', `%${q}%`).orWhereILike('email', `%${q}%`));
        if (after) query.where('username', '>', after);
        const rows = (await query) as UserRow[];
        const page = rows.slice(0, limit);
        return { items: page.map(userView), nextCursor: rows.length > limit ? encodeCursor(page[page.length - 1]!.username) : null };
      },
    },
    {
      method: 'POST',
      path: '/users',
      summary: 'Create a user with a password, global roles and teams',
      tags: ['identity'],
      permission: 'users:manage',
      body: json({
        type: 'object',
        required: ['username', 'password'],
        properties: { username: USERNAME, password: { type: 'string', minLength: 1, maxLength: 1024 }, ...userBodyProperties },
      }),
      handler: async (ctx) => {
        const body = ctx.body as { username: string; password: string; displayName?: string | null; email?: string | null; roles?: string[]; teams?: (string | { team: string; roles?: string[] })[] };
        checkPassword(body.password, body.username);
        const roles = resolveRoles(body.roles ?? ['viewer']);
        const teams = await resolveTeams(ctx.db, body.teams ?? ['default']);
        const taken = await ctx.db('users').whereRaw('lower(username) = lower(?)', [body.username]).first('id');
        if (taken) throw new AiplatError('conflict', `A user named "${body.username}" exists`, { field: 'username' });
        const id = randomUUID();
        await ctx.db('users').insert({
          id,
          username: body.username,
          password_hash: await hashPassword(body.password),
          display_name: body.displayName ?? null,
          email: body.email ?? null,
          roles: JSON.stringify(roles),
          default_team_id: teams[0]?.id ?? null,
          password_changed_at: ctx.db.fn.now(),
        });
        await setTeams(ctx.db, id, teams);
        after(ctx, 'users');
        const row = await loadUser(ctx.db, id);
        return reply(201, { ...userView(row), teams: teams.map((t) => ({ id: t.id, roles: t.roles })) });
      },
    },
    {
      method: 'GET',
      path: '/users/:id',
      summary: 'One user',
      tags: ['identity'],
      permission: 'users:read',
      params: idParams,
      handler: async (ctx) => userView(await loadUser(ctx.db, ctx.params.id)),
    },
    {
      method: 'PATCH',
      path: '/users/:id',
      summary: 'Change a user: profile, global roles, teams, disabled',
      tags: ['identity'],
      permission: 'users:manage',
      params: idParams,
      body: json({ type: 'object', minProperties: 1, properties: { ...userBodyProperties, disabled: { type: 'boolean' }, defaultTeam: { type: 'string', maxLength: 100 } } }),
      handler: async (ctx) => {
        const body = ctx.body as { displayName?: string | null; email?: string | null; roles?: string[]; teams?: (string | { team: string; roles?: string[] })[]; disabled?: boolean; defaultTeam?: string };
        const row = await loadUser(ctx.db, ctx.params.id);
        const update: Record<string, unknown> = { updated_at: ctx.db.fn.now() };
        if (body.displayName !== undefined) update.display_name = body.displayName;
        if (body.email !== undefined) update.email = body.email;
        if (body.roles !== undefined) {
          const roles = resolveRoles(body.roles);
          if (!roles.includes('admin')) guardLastAdmin(row.id, 'remove the Admin role');
          update.roles = JSON.stringify(roles);
        }
        if (body.disabled !== undefined) {
          if (body.disabled) guardLastAdmin(row.id, 'disable this user');
          update.disabled_at = body.disabled ? (row.disabled_at ?? new Date()) : null;
          if (body.disabled) await auth.revokeSessions(ctx.db, row.id);
        }
        let teams: { id: string; roles: string[] }[] | undefined;
        if (body.teams !== undefined) {
          teams = await resolveTeams(ctx.db, body.teams);
          await setTeams(ctx.db, row.id, teams);
        }
        if (body.defaultTeam !== undefined) {
          const [team] = await resolveTeams(ctx.db, [body.defaultTeam]);
          const memberOf = teams ? teams.map((t) => t.id) : identity.teamsOf(row.id);
          if (!memberOf.includes(team!.id)) throw new AiplatError('validation_failed', `The default team must be one of the user's teams`, { field: 'defaultTeam' });
          update.default_team_id = team!.id;
        } else if (teams && !teams.some((t) => t.id === row.default_team_id)) {
          update.default_team_id = teams[0]?.id ?? null;
        }
        await ctx.db('users').where({ id: row.id }).update(update);
        after(ctx, 'users');
        const fresh = await loadUser(ctx.db, row.id);
        return { ...userView(fresh), ...(teams ? { teams: teams.map((t) => ({ id: t.id, roles: t.roles })) } : {}) };
      },
    },
    {
      method: 'DELETE',
      path: '/users/:id',
      summary: 'Delete a user (soft: the record stays for the audit log; the username becomes free)',
      tags: ['identity'],
      permission: 'users:manage',
      params: idParams,
      handler: async (ctx) => {
        const row = await loadUser(ctx.db, ctx.params.id);
        guardLastAdmin(row.id, 'delete this user');
        if (row.id === ctx.user!.id) throw new AiplatError('conflict', 'You cannot delete your own account');
        await ctx.db('users')
          .where({ id: row.id })
          .update({
            deleted_at: ctx.db.fn.now(),
            disabled_at: row.disabled_at ?? ctx.db.fn.now(),
            username: `${row.username}~deleted~${randomBytes(4).toString('hex')}`,
            password_hash: null,
            updated_at: ctx.db.fn.now(),
          });
        await ctx.db('api_tokens').where({ user_id: row.id }).whereNull('revoked_at').update({ revoked_at: ctx.db.fn.now() });
        await auth.revokeSessions(ctx.db, row.id);
        after(ctx, 'users');
      },
    },
    {
      method: 'POST',
      path: '/users/:id/password',
      summary: "Reset a user's password (their sessions end)",
      tags: ['identity'],
      permission: 'users:manage',
      params: idParams,
      body: json({ type: 'object', required: ['password'], properties: { password: { type: 'string', minLength: 1, maxLength: 1024 } } }),
      handler: async (ctx) => {
        const row = await loadUser(ctx.db, ctx.params.id);
        if (row.source !== 'local') throw new AiplatError('conflict', `${row.username} signs in through single sign-on and has no password here`);
        checkPassword(ctx.body.password, row.username);
        await ctx.db('users')
          .where({ id: row.id })
          .update({ password_hash: await hashPassword(ctx.body.password), password_changed_at: ctx.db.fn.now(), updated_at: ctx.db.fn.now() });
        await auth.revokeSessions(ctx.db, row.id);
        await ctx.db('login_failures').where({ key: `user:${row.username.toLowerCase()}` }).delete();
      },
    },

    // ---- roles and permissions ----------------------------------------------------------------
    {
      method: 'GET',
      path: '/permissions',
      summary: 'Every permission the core and the plugins declare, with titles and the declaring plugin',
      tags: ['identity'],
      permission: 'roles:read',
      handler: () => {
        const owners = options.permissionOwners();
        return {
          items: identity
            .declared()
            .map((d: PermissionDeclaration) => ({ id: d.id, title: d.title, defaultRoles: d.defaultRoles ?? [], owner: owners.get(d.id) ?? 'core' }))
            .sort((a, b) => a.id.localeCompare(b.id)),
          nextCursor: null,
        };
      },
    },
    {
      method: 'GET',
      path: '/roles',
      summary: 'Roles: the built-in Admin, Operator and Viewer, and custom roles, with their permissions',
      tags: ['identity'],
      permission: 'roles:read',
      handler: async (ctx) => {
        const counts = new Map<string, number>();
        for (const row of (await ctx.db('users').whereNull('deleted_at').select('roles')) as { roles: string[] | string }[]) {
          for (const r of list(row.roles)) counts.set(r, (counts.get(r) ?? 0) + 1);
        }
        return {
          items: identity.allRoles().map((r) => {
            const perms = identity.rolePermissions(r.id);
            return {
              id: r.id,
              name: r.name,
              description: r.description,
              builtin: r.builtin,
              permissions: perms === 'all' ? identity.declared().map((d) => d.id).sort() : [...perms].sort(),
              allPermissions: perms === 'all',
              users: counts.get(r.id) ?? 0,
            };
          }),
          nextCursor: null,
        };
      },
    },
    {
      method: 'POST',
      path: '/roles',
      summary: 'Create a custom role from declared permissions',
      tags: ['identity'],
      permission: 'roles:manage',
      body: json({
        type: 'object',
        required: ['name', 'permissions'],
        properties: { name: NAME, description: { type: ['string', 'null'], maxLength: 400 }, permissions: { type: 'array', maxItems: 500, uniqueItems: true, items: PERMISSION } },
      }),
      handler: async (ctx) => {
        const body = ctx.body as { name: string; description?: string | null; permissions: string[] };
        for (const p of body.permissions) {
          if (!identity.isDeclared(p)) throw new AiplatError('validation_failed', `Unknown permission "${p}": no enabled plugin or the core declares it`, { field: 'permissions', permission: p });
        }
        if (identity.resolveRole(body.name)) throw new AiplatError('conflict', `A role named "${body.name}" exists`, { field: 'name' });
        const id = `r_${randomBytes(6).toString('hex')}`;
        await ctx.db('roles').insert({ id, name: body.name, description: body.description ?? null, builtin: false, permissions: JSON.stringify(body.permissions) });
        after(ctx, 'roles');
        return reply(201, { id, name: body.name, description: body.description ?? null, builtin: false, permissions: [...body.permissions].sort(), allPermissions: false, users: 0 });
      },
    },
    {
      method: 'PATCH',
      path: '/roles/:id',
      summary: 'Change a custom role (built-in roles are fixed)',
      tags: ['identity'],
      permission: 'roles:manage',
      params: idParams,
      body: json({
        type: 'object',
        minProperties: 1,
        properties: { name: NAME, description: { type: ['string', 'null'], maxLength: 400 }, permissions: { type: 'array', maxItems: 500, uniqueItems: true, items: PERMISSION } },
      }),
      handler: async (ctx) => {
        const role = identity.role(ctx.params.id);
        if (!role) throw new AiplatError('not_found', `No role with id "${ctx.params.id}"`);
        if (role.builtin) throw new AiplatError('conflict', `${role.name} is a built-in role and cannot be changed; create a custom role instead`);
        const body = ctx.body as { name?: string; description?: string | null; permissions?: string[] };
        for (const p of body.permissions ?? []) {
          if (!identity.isDeclared(p)) throw new AiplatError('validation_failed', `Unknown permission "${p}": no enabled plugin or the core declares it`, { field: 'permissions', permission: p });
        }
        if (body.name !== undefined) {
          const other = identity.resolveRole(body.name);
          if (other && other.id !== role.id) throw new AiplatError('conflict', `A role named "${body.name}" exists`, { field: 'name' });
        }
        await ctx.db('roles')
          .where({ id: role.id })
          .update({
            ...(body.name !== undefined ? { name: body.name } : {}),
            ...(body.description !== undefined ? { description: body.description } : {}),
            ...(body.permissions !== undefined ? { permissions: JSON.stringify(body.permissions) } : {}),
            updated_at: ctx.db.fn.now(),
          });
        after(ctx, 'roles');
        return { id: role.id, name: body.name ?? role.name, description: body.description !== undefined ? body.description : role.description, builtin: false, permissions: [...(body.permissions ?? role.permissions)].sort(), allPermissions: false };
      },
    },
    {
      method: 'DELETE',
      path: '/roles/:id',
      summary: 'Delete a custom role that nobody holds',
      tags: ['identity'],
      permission: 'roles:manage',
      params: idParams,
      handler: async (ctx) => {
        const role = identity.role(ctx.params.id);
        if (!role) throw new AiplatError('not_found', `No role with id "${ctx.params.id}"`);
        if (role.builtin) throw new AiplatError('conflict', `${role.name} is a built-in role and cannot be deleted`);
        const holders = (await ctx.db('users').whereNull('deleted_at').whereRaw('roles @> ?::jsonb', [JSON.stringify([role.id])]).count({ n: '*' }).first()) as { n: string | number };
        const members = (await ctx.db('team_members').whereRaw('roles @> ?::jsonb', [JSON.stringify([role.id])]).count({ n: '*' }).first()) as { n: string | number };
        const total = Number(holders.n) + Number(members.n);
        if (total > 0) throw new AiplatError('conflict', `${total} user or team binding(s) still use the role "${role.name}": take it away from them first`, { bindings: total });
        await ctx.db('roles').where({ id: role.id }).delete();
        after(ctx, 'roles');
      },
    },

    // ---- teams -------------------------------------------------------------------------------
    {
      method: 'GET',
      path: '/teams',
      summary: 'Teams (projects): every team for holders of teams:manage, else the caller’s own',
      tags: ['identity'],
      permission: 'teams:read',
      query: listQuery,
      handler: async (ctx) => {
        const { q, limit, cursor } = ctx.query as { q?: string; limit: number; cursor?: string };
        const after = decodeCursor(cursor);
        const query = ctx.db('teams').orderBy('name').limit(limit + 1);
        if (!ctx.can('teams:manage') || ctx.user!.via === 'token') query.whereIn('id', identity.teamsOf(ctx.user!.id));
        if (q) query.whereILike('name', `%${q}%`);
        if (after) query.where('name', '>', after);
        const rows = (await query) as { id: string; name: string; description: string | null; created_at: Date | string }[];
        const page = rows.slice(0, limit);
        const counts = page.length
          ? ((await ctx.db('team_members').whereIn('team_id', page.map((t) => t.id)).groupBy('team_id').select('team_id').count({ n: '*' })) as { team_id: string; n: string | number }[])
          : [];
        const byTeam = new Map(counts.map((c) => [c.team_id, Number(c.n)]));
        return {
          items: page.map((t) => ({ id: t.id, name: t.name, description: t.description, members: byTeam.get(t.id) ?? 0, createdAt: iso(t.created_at) })),
          nextCursor: rows.length > limit ? encodeCursor(page[page.length - 1]!.name) : null,
        };
      },
    },
    {
      method: 'POST',
      path: '/teams',
      summary: 'Create a team',
      tags: ['identity'],
      permission: 'teams:manage',
      body: json({ type: 'object', required: ['name'], properties: { name: NAME, description: { type: ['string', 'null'], maxLength: 400 } } }),
      handler: async (ctx) => {
        const taken = await ctx.db('teams').whereRaw('lower(name) = lower(?)', [ctx.body.name]).first('id');
        if (taken) throw new AiplatError('conflict', `A team named "${ctx.body.name}" exists`, { field: 'name' });
        const id = `t_${randomBytes(6).toString('hex')}`;
        await ctx.db('teams').insert({ id, name: ctx.body.name, description: ctx.body.description ?? null });
        after(ctx, 'teams');
        return reply(201, { id, name: ctx.body.name, description: ctx.body.description ?? null, members: 0 });
      },
    },
    {
      method: 'GET',
      path: '/teams/:id',
      summary: 'A team with its members',
      tags: ['identity'],
      permission: 'teams:read',
      params: idParams,
      handler: async (ctx) => {
        const team = (await ctx.db('teams').where({ id: ctx.params.id }).first()) as { id: string; name: string; description: string | null; created_at: Date } | undefined;
        if (!team || !(ctx.can('teams:manage') || identity.teamsOf(ctx.user!.id).includes(team.id))) throw new AiplatError('not_found', `No team with id "${ctx.params.id}"`);
        const members = (await ctx
          .db('team_members as m')
          .join('users as u', 'u.id', 'm.user_id')
          .whereNull('u.deleted_at')
          .where('m.team_id', team.id)
          .orderBy('u.username')
          .select('u.id', 'u.username', 'u.display_name', 'u.disabled_at', 'm.roles')) as { id: string; username: string; display_name: string | null; disabled_at: Date | null; roles: string[] | string }[];
        return {
          id: team.id,
          name: team.name,
          description: team.description,
          createdAt: iso(team.created_at),
          members: members.map((m) => ({ id: m.id, username: m.username, displayName: m.display_name, disabled: m.disabled_at !== null, roles: list(m.roles) })),
        };
      },
    },
    {
      method: 'PATCH',
      path: '/teams/:id',
      summary: 'Rename or describe a team',
      tags: ['identity'],
      permission: 'teams:manage',
      params: idParams,
      body: json({ type: 'object', minProperties: 1, properties: { name: NAME, description: { type: ['string', 'null'], maxLength: 400 } } }),
      handler: async (ctx) => {
        const team = (await ctx.db('teams').where({ id: ctx.params.id }).first('id')) as { id: string } | undefined;
        if (!team) throw new AiplatError('not_found', `No team with id "${ctx.params.id}"`);
        if (ctx.body.name !== undefined) {
          const taken = (await ctx.db('teams').whereRaw('lower(name) = lower(?)', [ctx.body.name]).whereNot({ id: team.id }).first('id')) as { id: string } | undefined;
          if (taken) throw new AiplatError('conflict', `A team named "${ctx.body.name}" exists`, { field: 'name' });
        }
        await ctx.db('teams').where({ id: team.id }).update({ ...ctx.body, updated_at: ctx.db.fn.now() });
        after(ctx, 'teams');
        return ctx.db('teams').where({ id: team.id }).first('id', 'name', 'description');
      },
    },
    {
      method: 'DELETE',
      path: '/teams/:id',
      summary: 'Delete a team (not the default team); its members stay users',
      tags: ['identity'],
      permission: 'teams:manage',
      params: idParams,
      handler: async (ctx) => {
        if (ctx.params.id === 'default') throw new AiplatError('conflict', 'The default team cannot be deleted');
        const deleted = await ctx.db('teams').where({ id: ctx.params.id }).delete();
        if (!deleted) throw new AiplatError('not_found', `No team with id "${ctx.params.id}"`);
        await ctx.db('users').where({ default_team_id: ctx.params.id }).update({ default_team_id: null });
        after(ctx, 'teams');
      },
    },
    {
      method: 'PUT',
      path: '/teams/:id/members/:userId',
      summary: 'Add a member to a team, or set the roles they hold in it',
      tags: ['identity'],
      permission: 'teams:manage',
      params: { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 100 }, userId: { type: 'string', minLength: 1, maxLength: 100 } } },
      body: json({ type: 'object', properties: { roles: { type: 'array', maxItems: 20, items: { type: 'string', minLength: 1, maxLength: 40 } } } }),
      handler: async (ctx) => {
        const team = (await ctx.db('teams').where({ id: ctx.params.id }).first('id')) as { id: string } | undefined;
        if (!team) throw new AiplatError('not_found', `No team with id "${ctx.params.id}"`);
        const user = await loadUser(ctx.db, ctx.params.userId);
        const roles = resolveRoles((ctx.body as { roles?: string[] }).roles ?? []);
        await ctx.db('team_members').insert({ team_id: team.id, user_id: user.id, roles: JSON.stringify(roles) }).onConflict(['team_id', 'user_id']).merge({ roles: JSON.stringify(roles), source: null });
        if (!user.default_team_id) await ctx.db('users').where({ id: user.id }).update({ default_team_id: team.id });
        after(ctx, 'teams');
        return { team: team.id, user: user.id, roles };
      },
    },
    {
      method: 'DELETE',
      path: '/teams/:id/members/:userId',
      summary: 'Remove a member from a team',
      tags: ['identity'],
      permission: 'teams:manage',
      params: { type: 'object', properties: { id: { type: 'string', minLength: 1, maxLength: 100 }, userId: { type: 'string', minLength: 1, maxLength: 100 } } },
      handler: async (ctx) => {
        const removed = await ctx.db('team_members').where({ team_id: ctx.params.id, user_id: ctx.params.userId }).delete();
        if (!removed) throw new AiplatError('not_found', `User "${ctx.params.userId}" is not a member of team "${ctx.params.id}"`);
        const user = (await ctx.db('users').where({ id: ctx.params.userId }).first('default_team_id')) as { default_team_id: string | null } | undefined;
        if (user?.default_team_id === ctx.params.id) {
          const next = (await ctx.db('team_members').where({ user_id: ctx.params.userId }).first('team_id')) as { team_id: string } | undefined;
          await ctx.db('users').where({ id: ctx.params.userId }).update({ default_team_id: next?.team_id ?? null });
        }
        after(ctx, 'teams');
      },
    },

    // ---- API tokens --------------------------------------------------------------------------
    {
      method: 'GET',
      path: '/tokens',
      summary: 'My personal API tokens (never their values)',
      tags: ['identity'],
      permission: 'tokens:write',
      handler: async (ctx) => {
        const rows = (await ctx.db('api_tokens').where({ user_id: ctx.user!.id }).orderBy('created_at', 'desc')) as ApiTokenRow[];
        return { items: rows.map(tokenView), nextCursor: null };
      },
    },
    {
      method: 'POST',
      path: '/tokens',
      summary: 'Create a personal API token with some of my permissions; its value is shown once',
      tags: ['identity'],
      permission: 'tokens:write',
      body: json({
        type: 'object',
        required: ['name', 'permissions'],
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 100 },
          permissions: { type: 'array', minItems: 1, maxItems: 500, uniqueItems: true, items: PERMISSION },
          expiresInDays: { type: ['integer', 'null'], minimum: 1, maximum: 3650, description: 'days until it stops working; null never' },
        },
      }),
      handler: async (ctx) => {
        const principal = ctx.user!;
        if (principal.via !== 'session') throw new AiplatError('forbidden', 'Create API tokens from a signed-in session, not with another token');
        const body = ctx.body as { name: string; permissions: string[]; expiresInDays?: number | null };
        const held = new Set(identity.permissionsOf(principal.id).all);
        const missing = body.permissions.filter((p) => !held.has(p));
        if (missing.length) throw new AiplatError('forbidden', `A token can only carry permissions you hold; you do not hold ${missing.join(', ')}`, { permissions: missing });
        const expires = body.expiresInDays ? new Date(Date.now() + body.expiresInDays * 86_400_000) : null;
        const { token, view } = await apiTokens.create(ctx.db, principal.id, body.name, [...body.permissions].sort(), expires);
        return reply(201, { ...view, token });
      },
    },
    {
      method: 'DELETE',
      path: '/tokens/:id',
      summary: 'Revoke one of my API tokens (at once)',
      tags: ['identity'],
      permission: 'tokens:write',
      params: idParams,
      handler: async (ctx) => {
        const updated = await ctx.db('api_tokens').where({ id: ctx.params.id, user_id: ctx.user!.id }).whereNull('revoked_at').update({ revoked_at: ctx.db.fn.now() });
        if (!updated) throw new AiplatError('not_found', `No active token "${ctx.params.id}" of yours`);
        apiTokens.forget(ctx.params.id);
        after(ctx, 'tokens');
      },
    },
  ];
  return routes;
}

export { BUILTIN_ROLES };
