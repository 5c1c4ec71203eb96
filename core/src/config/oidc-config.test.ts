// Single sign-on settings: defaults, the environment over the file's `oidc` object, and a clear
// message for every mistake (the client secret never shown).
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';
import { readOidcConfig } from './oidc-config.js';

const SECRET = 'very-secret-client-secret-value';
const base = { AIPLAT_OIDC_ISSUER: 'https://sso.example.com/realms/main', AIPLAT_OIDC_CLIENT_ID: 'aiplat' };

function configFile(content: unknown): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-oidc-config-'));
  const file = path.join(dir, 'aiplat.json');
  writeFileSync(file, JSON.stringify(content));
  return file;
}

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env, '/srv');
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('single sign-on settings', () => {
  it('is off without an issuer, and has defaults once issuer and client id are set', () => {
    expect(loadConfig({}, '/srv').oidc).toBeUndefined();
    expect(loadConfig({ ...base, AIPLAT_OIDC_CLIENT_SECRET: SECRET }, '/srv').oidc).toEqual({
      issuer: 'https://sso.example.com/realms/main',
      clientId: 'aiplat',
      clientSecret: SECRET,
      scopes: ['openid', 'profile', 'email'],
      label: 'Single sign-on',
      usernameClaim: 'preferred_username',
      groupsClaim: 'groups',
      defaultRoles: ['viewer'],
      mappings: [],
    });
  });

  it('reads the mapping from the config file, the environment winning over its client settings', () => {
    const file = configFile({
      oidc: {
        issuer: 'https://other.example.com',
        clientId: 'from-file',
        label: 'Keycloak',
        scopes: ['openid', 'profile', 'groups'],
        groupsClaim: 'realm_access.roles',
        defaultRoles: [],
        mappings: [
          { group: 'ml-admins', roles: ['Admin'] },
          { claim: { name: 'department', value: 'vision' }, teams: ['vision', { team: 'research', roles: ['Operator'] }] },
        ],
      },
    });
    const config = loadConfig({ ...base, AIPLAT_CONFIG_FILE: file }, '/srv').oidc!;
    expect(config).toMatchObject({
      issuer: base.AIPLAT_OIDC_ISSUER,
      clientId: 'aiplat',
      clientSecret: undefined,
      label: 'Keycloak',
      scopes: ['openid', 'profile', 'groups'],
      groupsClaim: 'realm_access.roles',
      defaultRoles: [],
    });
    expect(config.mappings).toEqual([
      { group: 'ml-admins', roles: ['Admin'], teams: [] },
      { claim: { name: 'department', value: 'vision' }, roles: [], teams: [{ team: 'vision', roles: [] }, { team: 'research', roles: ['Operator'] }] },
    ]);
  });

  it('refuses half a setup and bad values with messages that say what is expected', () => {
    expect(problemsOf({ AIPLAT_OIDC_CLIENT_ID: 'aiplat', AIPLAT_OIDC_CLIENT_SECRET: SECRET })).toEqual([
      'AIPLAT_OIDC_CLIENT_ID is set but AIPLAT_OIDC_ISSUER is not: single sign-on needs the issuer URL too (or remove the client id)',
      'AIPLAT_OIDC_CLIENT_SECRET is set but AIPLAT_OIDC_ISSUER is not: single sign-on needs the issuer URL too (or remove the client secret)',
    ]);
    expect(problemsOf({ AIPLAT_OIDC_ISSUER: 'https://sso.example.com' })).toEqual([
      'AIPLAT_OIDC_ISSUER is set but AIPLAT_OIDC_CLIENT_ID is not: single sign-on needs the client id registered at the provider',
    ]);
    const bad = problemsOf({ ...base, AIPLAT_OIDC_ISSUER: 'sso.example.com', AIPLAT_OIDC_SCOPES: 'profile email', AIPLAT_OIDC_CLIENT_SECRET: SECRET });
    expect(bad[0]).toMatch(/^AIPLAT_OIDC_ISSUER is "sso.example.com": not a URL; expected the identity provider's issuer URL/);
    expect(bad[1]).toBe('AIPLAT_OIDC_SCOPES is "profile email": the scopes must include "openid" (OpenID Connect sign-in needs it)');
    expect(problemsOf({ ...base, AIPLAT_OIDC_ISSUER: 'ftp://sso.example.com' })[0]).toMatch(/^AIPLAT_OIDC_ISSUER is "ftp:\/\/sso.example.com": expected the identity provider's issuer URL/);
    expect(problemsOf({ ...base, AIPLAT_OIDC_ISSUER: 'https://sso.example.com/?realm=x' })[0]).toContain('an issuer URL has no query');
    for (const message of [...bad, ...problemsOf({ AIPLAT_OIDC_CLIENT_SECRET: SECRET })]) expect(message).not.toContain(SECRET);
  });

  it('checks every mapping and names where the mistake is', () => {
    const { config, problems } = readOidcConfig(
      base,
      {
        usernameClaim: '',
        defaultRoles: 'viewer',
        colour: 'blue',
        mappings: [
          { group: 'a', claim: { name: 'x', value: 'y' }, roles: ['Admin'] },
          { group: 'b' },
          { claim: { name: 'dept' }, roles: ['Viewer'] },
          { group: 'c', teams: [{ team: 'bad/name' }], roles: [''] },
          'admins',
        ],
      },
      'aiplat.yaml',
    );
    expect(config).toBeUndefined();
    expect(problems).toEqual([
      'aiplat.yaml (oidc.colour): unknown setting (known: issuer, clientId, clientSecret, scopes, label, usernameClaim, groupsClaim, defaultRoles, mappings)',
      'aiplat.yaml (oidc.usernameClaim) is "": expected a claim name such as "preferred_username" (a dotted path reaches into an object claim)',
      'aiplat.yaml (oidc.defaultRoles) is "viewer": expected a list of role ids or names, such as ["Viewer"] or ["operator"]',
      'aiplat.yaml (oidc.mappings[0]): give exactly one condition, "group" or "claim" (both are set)',
      'aiplat.yaml (oidc.mappings[1]): gives neither "roles" nor "teams", so it would do nothing',
      'aiplat.yaml (oidc.mappings[2].claim) is {"name":"dept"}: expected { name: "<claim or dotted path>", value: "<value>" }, such as { name: "realm_access.roles", value: "ml-admin" }',
      'aiplat.yaml (oidc.mappings[3].roles) is [""]: expected a list of role ids or names, such as ["Viewer"] or ["operator"]',
      'aiplat.yaml (oidc.mappings[3].teams[0]) is {"team":"bad/name"}: expected a team name (1–40 letters, digits, spaces, ".", "_" or "-") or { team, roles }',
      'aiplat.yaml (oidc.mappings[4]): expected an object such as { group: "ml-admins", roles: ["Admin"] }',
    ]);
  });

  it('accepts `oidc` as a config file key, and nothing else unknown', () => {
    const file = configFile({ oidc: { mappings: [] }, colour: 'blue' });
    expect(problemsOf({ AIPLAT_CONFIG_FILE: file })).toEqual([expect.stringMatching(/unknown setting "colour" \(known: .*, oidc\)$/)]);
  });
});
