/**
 * Who may do what: users' global roles, team memberships with team roles, and the permissions
 * roles carry (ARCHITECTURE §3, identity issue item 4).
 *
 * Everything needed to authorize a request is held in memory and answered synchronously (a map
 * lookup and a set lookup), so RBAC costs the hot path almost nothing. Any change to users, roles
 * or teams reloads it, here at once and on every other core replica through the event hub.
 *
 * - `admin` holds every permission, in every team.
 * - `operator` and `viewer` hold the permissions whose declarations (the core's and the plugin
 *   manifests') list them in `defaultRoles`, so a new plugin's permissions reach them.
 * - A custom role holds exactly the permissions stored with it.
 * - A route's permission check passes when the caller holds the permission globally or in any
 *   of their teams; handlers of team-owned objects then check the object's team with
 *   `ctx.can(permission, teamId)` (the SDK's scoped query helper does it for them).
 * - An API token can use only its scopes, and only while its owner still holds them.
 */
import type { Knex } from 'knex';
import type { Logger, PermissionDeclaration, Principal } from '@aiplat/plugin-sdk';

export const BUILTIN_ROLES = ['admin', 'operator', 'viewer'] as const;

export interface RoleRecord {
  id: string;
  name: string;
  description: string | null;
  builtin: boolean;
  /** Stored permissions (custom roles); built-in roles derive theirs. */
  permissions: string[];
}

interface UserState {
  id: string;
  username: string;
  roles: string[];
  active: boolean;
  defaultTeam: string | null;
  /** team id → roles held in that team */
  teams: Map<string, string[]>;
}

interface Effective {
  all: boolean;
  global: Set<string>;
  byTeam: Map<string, Set<string>>;
  /** global ∪ every team's */
  any: Set<string>;
}

export class IdentityService {
  private users = new Map<string, UserState>();
  private roles = new Map<string, RoleRecord>();
  private teamNames = new Map<string, string>();
  private rolePermissionCache = new Map<string, Set<string> | 'all'>();
  private effectiveCache = new Map<string, Effective>();
  private reloading: Promise<void> | null = null;
  private again = false;
  private declarations: PermissionDeclaration[] = [];

  constructor(
    private readonly db: () => Knex,
    private readonly logger: Logger,
  ) {}

  /** The declared permissions changed (a plugin enabled, boot): built-in roles follow. */
  setDeclarations(declarations: PermissionDeclaration[]): void {
    this.declarations = declarations;
    this.rolePermissionCache.clear();
    this.effectiveCache.clear();
  }

  declared(): PermissionDeclaration[] {
    return this.declarations;
  }

  isDeclared(permission: string): boolean {
    return this.declarations.some((d) => d.id === permission);
  }

  /** Load everything from the database (at start, and after every change). */
  async load(): Promise<void> {
    const db = this.db();
    const [users, roles, members, teams] = await Promise.all([
      db('users').whereNull('deleted_at').select('id', 'username', 'roles', 'disabled_at', 'default_team_id'),
      db('roles').select('id', 'name', 'description', 'builtin', 'permissions'),
      db('team_members').select('team_id', 'user_id', 'roles'),
      db('teams').select('id', 'name'),
    ]);
    const nextUsers = new Map<string, UserState>();
    for (const u of users as { id: string; username: string; roles: string[] | string; disabled_at: Date | null; default_team_id: string | null }[]) {
      nextUsers.set(u.id, {
        id: u.id,
        username: u.username,
        roles: parseList(u.roles),
        active: !u.disabled_at,
        defaultTeam: u.default_team_id,
        teams: new Map(),
      });
    }
    for (const m of members as { team_id: string; user_id: string; roles: string[] | string }[]) {
      nextUsers.get(m.user_id)?.teams.set(m.team_id, parseList(m.roles));
    }
    const nextRoles = new Map<string, RoleRecord>();
    for (const r of roles as { id: string; name: string; description: string | null; builtin: boolean; permissions: string[] | string }[]) {
      nextRoles.set(r.id, { id: r.id, name: r.name, description: r.description, builtin: r.builtin, permissions: parseList(r.permissions) });
    }
    this.users = nextUsers;
    this.roles = nextRoles;
    this.teamNames = new Map((teams as { id: string; name: string }[]).map((t) => [t.id, t.name]));
    this.rolePermissionCache.clear();
    this.effectiveCache.clear();
  }

  /** Reload after a change; calls during a reload coalesce into one more. */
  reload(): Promise<void> {
    if (this.reloading) {
      this.again = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      try {
        do {
          this.again = false;
          await this.load();
        } while (this.again);
      } catch (error) {
        this.logger.error({ err: error }, 'cannot reload users, roles and teams');
      } finally {
        this.reloading = null;
      }
    })();
    return this.reloading;
  }

  // ---- roles ----------------------------------------------------------------------------

  role(id: string): RoleRecord | undefined {
    return this.roles.get(id);
  }

  allRoles(): RoleRecord[] {
    return [...this.roles.values()].sort((a, b) => Number(b.builtin) - Number(a.builtin) || a.name.localeCompare(b.name));
  }

  /** A role id from an id or a name, case-insensitively (`Viewer` → `viewer`). */
  resolveRole(idOrName: string): RoleRecord | undefined {
    const exact = this.roles.get(idOrName);
    if (exact) return exact;
    const lower = idOrName.toLowerCase();
    for (const role of this.roles.values()) if (role.id.toLowerCase() === lower || role.name.toLowerCase() === lower) return role;
    return undefined;
  }

  /** The permissions a role carries (`all` for admin). */
  rolePermissions(roleId: string): Set<string> | 'all' {
    const cached = this.rolePermissionCache.get(roleId);
    if (cached) return cached;
    let value: Set<string> | 'all';
    if (roleId === 'admin') value = 'all';
    else {
      const role = this.roles.get(roleId);
      const fromDefaults = this.declarations.filter((d) => d.defaultRoles?.includes(roleId)).map((d) => d.id);
      value = new Set(role && !role.builtin ? [...role.permissions, ...fromDefaults] : fromDefaults);
    }
    this.rolePermissionCache.set(roleId, value);
    return value;
  }

  // ---- users ----------------------------------------------------------------------------

  isActive(userId: string): boolean {
    return this.users.get(userId)?.active ?? false;
  }

  rolesOf(userId: string): string[] {
    return this.users.get(userId)?.roles ?? [];
  }

  teamsOf(userId: string): string[] {
    const user = this.users.get(userId);
    return user ? [...user.teams.keys()] : [];
  }

  teamRolesOf(userId: string): { id: string; name: string; roles: string[] }[] {
    const user = this.users.get(userId);
    if (!user) return [];
    return [...user.teams].map(([id, roles]) => ({ id, name: this.teamNames.get(id) ?? id, roles })).sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Whether a team with this id exists. */
  teamExists(teamId: string): boolean {
    return this.teamNames.has(teamId);
  }

  defaultTeamOf(userId: string): string | null {
    return this.users.get(userId)?.defaultTeam ?? null;
  }

  isAdmin(userId: string): boolean {
    return this.rolesOf(userId).includes('admin');
  }

  /** Active users holding the global admin role (the last one cannot be removed). */
  activeAdmins(): string[] {
    return [...this.users.values()].filter((u) => u.active && u.roles.includes('admin')).map((u) => u.id);
  }

  private effective(userId: string): Effective | undefined {
    const cached = this.effectiveCache.get(userId);
    if (cached) return cached;
    const user = this.users.get(userId);
    if (!user) return undefined;
    const all = user.roles.includes('admin');
    const collect = (roles: string[]) => {
      const out = new Set<string>();
      for (const role of roles) {
        const perms = this.rolePermissions(role);
        if (perms === 'all') return 'all' as const;
        for (const p of perms) out.add(p);
      }
      return out;
    };
    const globalRaw = collect(user.roles);
    const global = globalRaw === 'all' ? new Set<string>() : globalRaw;
    const byTeam = new Map<string, Set<string>>();
    const any = new Set(global);
    for (const [team, roles] of user.teams) {
      const perms = collect(roles);
      if (perms === 'all') {
        // Admin of a team: every permission, in that team only.
        byTeam.set(team, new Set(this.declarations.map((d) => d.id)));
      } else byTeam.set(team, new Set([...global, ...perms]));
      for (const p of byTeam.get(team)!) any.add(p);
    }
    const value: Effective = { all: all || globalRaw === 'all', global, byTeam, any };
    this.effectiveCache.set(userId, value);
    return value;
  }

  /**
   * The route check: the caller holds the permission globally or in one of their teams (and, for
   * an API token, the token's scopes include it). Synchronous and cheap.
   */
  can = (principal: Principal, permission: string): boolean => {
    if (principal.via === 'token' && !(principal.scopes ?? []).includes(permission)) return false;
    if (principal.via === 'custom') return principal.roles.includes('admin') || (principal.scopes ?? []).includes(permission);
    const effective = this.effective(principal.id);
    if (!effective) return false;
    return effective.all || effective.any.has(permission);
  };

  /** Whether the caller holds the permission for objects of one team (admins: always). */
  canInTeam(principal: Principal, permission: string, teamId: string | null | undefined): boolean {
    if (principal.via === 'token' && !(principal.scopes ?? []).includes(permission)) return false;
    const effective = this.effective(principal.id);
    if (!effective) return false;
    if (effective.all) return true;
    if (effective.global.has(permission)) return true;
    return teamId ? (effective.byTeam.get(teamId)?.has(permission) ?? false) : false;
  }

  /** Every permission the user holds anywhere (sorted), and per team. */
  permissionsOf(userId: string): { all: string[]; byTeam: Record<string, string[]> } {
    const effective = this.effective(userId);
    if (!effective) return { all: [], byTeam: {} };
    if (effective.all) {
      const everything = this.declarations.map((d) => d.id).sort();
      return { all: everything, byTeam: Object.fromEntries([...(this.users.get(userId)?.teams.keys() ?? [])].map((t) => [t, everything])) };
    }
    return {
      all: [...effective.any].sort(),
      byTeam: Object.fromEntries([...effective.byTeam].map(([team, perms]) => [team, [...perms].sort()])),
    };
  }

  /**
   * A principal whose roles and teams always read the current state (a cached access token keeps
   * working across role changes, and stops at once when the user is disabled).
   */
  principal(user: { id: string; username: string }, via: Principal['via'] = 'session', token?: { id: string; scopes: string[] }): Principal {
    const rolesOf = () => this.rolesOf(user.id);
    const teamsOf = () => this.teamsOf(user.id);
    const defaultTeamOf = () => this.defaultTeamOf(user.id);
    return {
      id: user.id,
      username: user.username,
      via,
      ...(token ? { tokenId: token.id, scopes: token.scopes } : {}),
      get roles() {
        return rolesOf();
      },
      get teams() {
        return teamsOf();
      },
      get defaultTeam() {
        return defaultTeamOf();
      },
    };
  }
}

function parseList(value: string[] | string | null | undefined): string[] {
  if (Array.isArray(value)) return value.map(String);
  if (typeof value === 'string') {
    try {
      const parsed = JSON.parse(value) as unknown;
      return Array.isArray(parsed) ? parsed.map(String) : [];
    } catch {
      return [];
    }
  }
  return [];
}
