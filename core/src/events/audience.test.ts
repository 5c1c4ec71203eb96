import { describe, expect, it } from 'vitest';
import type { Principal } from '@aiplat/plugin-sdk';
import { canSee, normaliseAudience } from './audience.js';

const grants: Record<string, string[]> = { viewer: ['plugins:read', 'streamer:read'], operator: ['plugins:read', 'ops:run'] };
const can = (p: Principal, permission: string) => p.roles.some((r) => grants[r]?.includes(permission) ?? false);
const user = (id: string, roles: string[], teams?: string[]): Principal => ({ id, username: id, roles, teams, via: 'session' });

const admin = user('root', ['admin']);
const vera = user('vera', ['viewer'], ['blue']);
const otto = user('otto', ['operator'], ['red', 'blue']);
const nobody = user('nobody', []);

describe('who sees an event', () => {
  it('lets every signed-in user see an event without an audience', () => {
    for (const p of [admin, vera, otto, nobody]) {
      expect(canSee(p, undefined, can)).toBe(true);
      expect(canSee(p, {}, can)).toBe(true);
    }
  });

  it('lets admins see everything', () => {
    for (const audience of [{ permission: 'nobody:has' }, { team: 'none' }, { user: 'someone' }, { team: 'x', user: 'y', permission: 'z' }]) {
      expect(canSee(admin, audience, can)).toBe(true);
    }
  });

  it('checks the permission through the permission check', () => {
    expect(canSee(vera, { permission: 'streamer:read' }, can)).toBe(true);
    expect(canSee(otto, { permission: 'streamer:read' }, can)).toBe(false);
    expect(canSee(nobody, { permission: 'plugins:read' }, can)).toBe(false);
  });

  it('checks the team against the caller\'s teams (none when the principal has no teams)', () => {
    expect(canSee(otto, { team: 'red' }, can)).toBe(true);
    expect(canSee(vera, { team: 'red' }, can)).toBe(false);
    expect(canSee(vera, { team: 'blue' }, can)).toBe(true);
    expect(canSee(nobody, { team: 'blue' }, can)).toBe(false);
  });

  it('checks the user against the caller\'s id', () => {
    expect(canSee(vera, { user: 'vera' }, can)).toBe(true);
    expect(canSee(otto, { user: 'vera' }, can)).toBe(false);
  });

  it('needs every condition given', () => {
    expect(canSee(vera, { user: 'vera', permission: 'streamer:read' }, can)).toBe(true);
    expect(canSee(vera, { user: 'vera', permission: 'ops:run' }, can)).toBe(false);
    expect(canSee(otto, { team: 'red', permission: 'ops:run' }, can)).toBe(true);
    expect(canSee(otto, { team: 'red', permission: 'streamer:read' }, can)).toBe(false);
    expect(canSee(otto, { team: 'red', user: 'vera' }, can)).toBe(false);
  });
});

describe('audiences given by publishers', () => {
  it('keeps the known fields and drops empty audiences', () => {
    expect(normaliseAudience(undefined)).toBeUndefined();
    expect(normaliseAudience({})).toBeUndefined();
    expect(normaliseAudience({ team: 't', user: undefined })).toEqual({ team: 't' });
    expect(normaliseAudience({ team: 't', permission: 'p', user: 'u' })).toEqual({ team: 't', permission: 'p', user: 'u' });
  });

  it('refuses unknown fields and values that are not non-empty strings, naming them', () => {
    expect(() => normaliseAudience({ teams: ['a'] })).toThrow('unknown event audience field "teams"');
    expect(() => normaliseAudience({ user: 42 })).toThrow('"user" must be a non-empty string');
    expect(() => normaliseAudience({ permission: '' })).toThrow('"permission" must be a non-empty string');
    expect(() => normaliseAudience('admins')).toThrow('an event audience is an object');
  });
});
