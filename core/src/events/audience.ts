import type { EventAudience, Principal } from '@aiplat/plugin-sdk';

export type PermissionCheck = (principal: Principal, permission: string) => boolean;

/**
 * Whether a signed-in caller may see an event with this audience. Admins see everything; an event
 * without an audience is for every signed-in user; otherwise every condition given must hold:
 * `user` is the caller, the caller is a member of `team`, the caller holds `permission`.
 */
export function canSee(principal: Principal, audience: EventAudience | undefined, can: PermissionCheck): boolean {
  if (!audience) return true;
  if (principal.roles.includes('admin')) return true;
  if (audience.user !== undefined && audience.user !== principal.id) return false;
  if (audience.team !== undefined && !(principal.teams ?? []).includes(audience.team)) return false;
  if (audience.permission !== undefined && !can(principal, audience.permission)) return false;
  return true;
}

/** A clean copy of an audience given by a caller: only the known fields, each a non-empty string. */
export function normaliseAudience(audience: unknown): EventAudience | undefined {
  if (audience === undefined || audience === null) return undefined;
  if (typeof audience !== 'object' || Array.isArray(audience)) throw new TypeError('an event audience is an object { team?, permission?, user? }');
  const out: EventAudience = {};
  for (const key of Object.keys(audience)) {
    if (key !== 'team' && key !== 'permission' && key !== 'user') {
      throw new TypeError(`unknown event audience field "${key}" (known: team, permission, user)`);
    }
    const value = (audience as Record<string, unknown>)[key];
    if (value === undefined) continue;
    if (typeof value !== 'string' || value.length === 0) throw new TypeError(`event audience field "${key}" must be a non-empty string`);
    out[key] = value;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}
