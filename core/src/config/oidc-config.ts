/**
 * Single sign-on settings (OIDC, docs/identity.md "Single sign-on"): the client aiplat is at the
 * identity provider, and how the provider's groups and claims map to aiplat roles and teams.
 *
 * They come from the environment (`AIPLAT_OIDC_*`) and from the `oidc` object of the config file
 * (`AIPLAT_CONFIG_FILE`), which may also hold the mapping; the environment wins. Every value is
 * checked at start, and every problem is reported with where the value came from. The client
 * secret never appears in a message.
 */

export interface OidcTeamGrant {
  /** A team name (or id); a team that does not exist yet is created at the first sign-in that needs it. */
  team: string;
  /** Roles held in that team (ids or names); none: a plain member. */
  roles: string[];
}

/** One rule: when its condition matches the signed-in person's claims, they get its roles and teams. */
export interface OidcMapping {
  /** Matches when the groups claim holds this value. */
  group?: string;
  /** Matches when the claim (a name, or a dotted path such as `realm_access.roles`) equals the value or, for a list, contains it. */
  claim?: { name: string; value: string | number | boolean };
  /** Global roles (ids or names). */
  roles: string[];
  teams: OidcTeamGrant[];
}

export interface OidcConfig {
  /** The issuer identifier, exactly as the provider states it (discovery reads `<issuer>/.well-known/openid-configuration`). */
  issuer: string;
  clientId: string;
  /** Unset: a public client (PKCE only). */
  clientSecret: string | undefined;
  /** Requested scopes; always includes `openid`. */
  scopes: string[];
  /** Text of the sign-in page's button: "Sign in with <label>". */
  label: string;
  /** The claim the username comes from (then `email`, then `sub`). */
  usernameClaim: string;
  /** The claim holding the person's groups (a list or a single value). */
  groupsClaim: string;
  /** Global roles every single sign-on user holds. */
  defaultRoles: string[];
  mappings: OidcMapping[];
}

export const OIDC_ENV = {
  issuer: 'AIPLAT_OIDC_ISSUER',
  clientId: 'AIPLAT_OIDC_CLIENT_ID',
  clientSecret: 'AIPLAT_OIDC_CLIENT_SECRET',
  scopes: 'AIPLAT_OIDC_SCOPES',
  label: 'AIPLAT_OIDC_LABEL',
} as const;

export const OIDC_DEFAULTS = {
  scopes: ['openid', 'profile', 'email'],
  label: 'Single sign-on',
  usernameClaim: 'preferred_username',
  groupsClaim: 'groups',
  defaultRoles: ['viewer'],
} as const;

const FILE_KEYS = ['issuer', 'clientId', 'clientSecret', 'scopes', 'label', 'usernameClaim', 'groupsClaim', 'defaultRoles', 'mappings'] as const;
const MAPPING_KEYS = ['group', 'claim', 'roles', 'teams'];
/** The same rule as `POST /api/v1/teams`: teams a mapping names may have to be created. */
const TEAM_NAME = /^[\p{L}\p{N}][\p{L}\p{N} _.-]{0,39}$/u;
const CLAIM_NAME = /^[^\s]{1,200}$/;

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const nonEmpty = (value: unknown, max = 200): value is string => typeof value === 'string' && value.trim().length > 0 && value.length <= max;

/**
 * Read and check the single sign-on settings. `fileValue` is the config file's `oidc` entry
 * (undefined when absent), `fileName` the file's name for messages. Without an issuer (from either
 * place) single sign-on is off and `config` is undefined.
 */
export function readOidcConfig(env: NodeJS.ProcessEnv, fileValue: unknown, fileName = 'the config file'): { config: OidcConfig | undefined; problems: string[] } {
  const problems: string[] = [];
  let file: Record<string, unknown> = {};
  if (fileValue !== undefined && fileValue !== null) {
    if (isObject(fileValue)) file = fileValue;
    else problems.push(`${fileName} (oidc): must be an object with the single sign-on settings (issuer, clientId, mappings, …)`);
  }
  for (const key of Object.keys(file)) {
    if (!(FILE_KEYS as readonly string[]).includes(key)) problems.push(`${fileName} (oidc.${key}): unknown setting (known: ${FILE_KEYS.join(', ')})`);
  }

  /** A value and the name to report it by: the environment variable, else the file's key. */
  const pick = (key: (typeof FILE_KEYS)[number], envName?: string): { value: unknown; where: string } | undefined => {
    const raw = envName ? env[envName] : undefined;
    if (raw !== undefined && raw !== '') return { value: raw, where: envName! };
    if (file[key] !== undefined) return { value: file[key], where: `${fileName} (oidc.${key})` };
    return undefined;
  };

  const issuerIn = pick('issuer', OIDC_ENV.issuer);
  const clientIdIn = pick('clientId', OIDC_ENV.clientId);
  const secretIn = pick('clientSecret', OIDC_ENV.clientSecret);
  const scopesIn = pick('scopes', OIDC_ENV.scopes);
  const labelIn = pick('label', OIDC_ENV.label);

  let issuer: string | undefined;
  if (issuerIn) {
    issuer = checkIssuer(issuerIn.value, issuerIn.where, problems);
  }
  if (!issuerIn) {
    // Client settings without an issuer are a half-done setup, not "single sign-on off".
    for (const [given, name] of [[clientIdIn, 'the client id'], [secretIn, 'the client secret']] as const) {
      if (given) problems.push(`${given.where} is set but ${OIDC_ENV.issuer} is not: single sign-on needs the issuer URL too (or remove ${name})`);
    }
  } else if (!clientIdIn) {
    problems.push(`${issuerIn.where} is set but ${OIDC_ENV.clientId} is not: single sign-on needs the client id registered at the provider`);
  }

  let clientId: string | undefined;
  if (clientIdIn) {
    if (nonEmpty(clientIdIn.value)) clientId = clientIdIn.value.trim();
    else problems.push(`${clientIdIn.where}: expected the client id registered at the identity provider (1–200 characters)`);
  }
  let clientSecret: string | undefined;
  if (secretIn) {
    // Never shown: only what is wrong with it.
    if (nonEmpty(secretIn.value, 4096)) clientSecret = secretIn.value;
    else problems.push(`${secretIn.where}: expected the client secret the identity provider issued (a non-empty string; the value is not shown)`);
  }

  let scopes: string[] = [...OIDC_DEFAULTS.scopes];
  if (scopesIn) {
    const list = typeof scopesIn.value === 'string' ? scopesIn.value.split(/[\s,]+/).filter(Boolean) : Array.isArray(scopesIn.value) ? scopesIn.value : undefined;
    if (!list || list.length === 0 || !list.every((s) => typeof s === 'string' && /^[\x21\x23-\x5B\x5D-\x7E]+$/.test(s))) {
      problems.push(`${scopesIn.where} is ${JSON.stringify(scopesIn.value)}: expected scopes separated by spaces, such as "openid profile email groups"`);
    } else if (!list.includes('openid')) {
      problems.push(`${scopesIn.where} is ${JSON.stringify(scopesIn.value)}: the scopes must include "openid" (OpenID Connect sign-in needs it)`);
    } else scopes = [...new Set(list as string[])];
  }

  let label: string = OIDC_DEFAULTS.label;
  if (labelIn) {
    if (nonEmpty(labelIn.value, 60)) label = labelIn.value.trim();
    else problems.push(`${labelIn.where} is ${JSON.stringify(labelIn.value)}: expected the button text, 1–60 characters (e.g. "Keycloak")`);
  }

  const claimSetting = (key: 'usernameClaim' | 'groupsClaim', fallback: string): string => {
    const given = pick(key);
    if (!given) return fallback;
    if (typeof given.value === 'string' && CLAIM_NAME.test(given.value)) return given.value;
    problems.push(`${given.where} is ${JSON.stringify(given.value)}: expected a claim name such as "${fallback}" (a dotted path reaches into an object claim)`);
    return fallback;
  };
  const usernameClaim = claimSetting('usernameClaim', OIDC_DEFAULTS.usernameClaim);
  const groupsClaim = claimSetting('groupsClaim', OIDC_DEFAULTS.groupsClaim);

  let defaultRoles: string[] = [...OIDC_DEFAULTS.defaultRoles];
  const defaultRolesIn = pick('defaultRoles');
  if (defaultRolesIn) {
    const roles = roleList(defaultRolesIn.value, defaultRolesIn.where, problems);
    if (roles) defaultRoles = roles;
  }

  const mappings: OidcMapping[] = [];
  const mappingsIn = pick('mappings');
  if (mappingsIn) {
    if (!Array.isArray(mappingsIn.value)) problems.push(`${mappingsIn.where}: expected a list of mappings such as [{ group: "ml-admins", roles: ["Admin"] }]`);
    else mappingsIn.value.forEach((entry, i) => {
      const mapping = checkMapping(entry, (sub = '') => `${fileName} (oidc.mappings[${i}]${sub})`, problems);
      if (mapping) mappings.push(mapping);
    });
  }

  if (problems.length > 0 || !issuer || !clientId) return { config: undefined, problems };
  return { config: { issuer, clientId, clientSecret, scopes, label, usernameClaim, groupsClaim, defaultRoles, mappings }, problems };
}

function checkIssuer(value: unknown, where: string, problems: string[]): string | undefined {
  const hint = 'expected the identity provider\'s issuer URL, such as https://sso.example.com/realms/main (http only for a provider on this machine or in tests)';
  if (typeof value !== 'string') {
    problems.push(`${where}: ${hint}`);
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    problems.push(`${where} is ${JSON.stringify(value)}: not a URL; ${hint}`);
    return undefined;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    problems.push(`${where} is ${JSON.stringify(value)}: ${hint}`);
    return undefined;
  }
  if (url.search || url.hash || url.username || url.password) {
    problems.push(`${where} is ${JSON.stringify(value)}: an issuer URL has no query, fragment or credentials; ${hint}`);
    return undefined;
  }
  // Kept exactly as given: the issuer identifier must match the provider's own, trailing slash and all.
  return value;
}

function roleList(value: unknown, where: string, problems: string[]): string[] | undefined {
  if (!Array.isArray(value) || !value.every((r) => nonEmpty(r, 40))) {
    problems.push(`${where} is ${JSON.stringify(value)}: expected a list of role ids or names, such as ["Viewer"] or ["operator"]`);
    return undefined;
  }
  return [...new Set((value as string[]).map((r) => r.trim()))];
}

/** `where()` names the mapping, `where('.roles')` a part of it. */
function checkMapping(entry: unknown, where: (sub?: string) => string, problems: string[]): OidcMapping | undefined {
  if (!isObject(entry)) {
    problems.push(`${where()}: expected an object such as { group: "ml-admins", roles: ["Admin"] }`);
    return undefined;
  }
  const before = problems.length;
  for (const key of Object.keys(entry)) {
    if (!MAPPING_KEYS.includes(key)) problems.push(`${where()}: unknown key "${key}" (known: ${MAPPING_KEYS.join(', ')})`);
  }
  const hasGroup = entry.group !== undefined;
  const hasClaim = entry.claim !== undefined;
  if (hasGroup === hasClaim) problems.push(`${where()}: give exactly one condition, "group" or "claim" (${hasGroup ? 'both are set' : 'neither is set'})`);
  if (hasGroup && !nonEmpty(entry.group, 400)) problems.push(`${where('.group')} is ${JSON.stringify(entry.group)}: expected a group name as the provider sends it (e.g. "ml-admins" or "/ml/admins")`);
  let claim: OidcMapping['claim'];
  if (hasClaim) {
    const c = entry.claim;
    const valueOk = (v: unknown) => (typeof v === 'string' && v.length > 0 && v.length <= 400) || typeof v === 'number' || typeof v === 'boolean';
    if (!isObject(c) || typeof c.name !== 'string' || !CLAIM_NAME.test(c.name) || !valueOk(c.value) || Object.keys(c).some((k) => k !== 'name' && k !== 'value')) {
      problems.push(`${where('.claim')} is ${JSON.stringify(c)}: expected { name: "<claim or dotted path>", value: "<value>" }, such as { name: "realm_access.roles", value: "ml-admin" }`);
    } else claim = { name: c.name, value: c.value as string | number | boolean };
  }
  let roles: string[] = [];
  if (entry.roles !== undefined) roles = roleList(entry.roles, where('.roles'), problems) ?? [];
  const teams: OidcTeamGrant[] = [];
  if (entry.teams !== undefined) {
    if (!Array.isArray(entry.teams)) problems.push(`${where('.teams')}: expected a list of teams, such as ["vision"] or [{ team: "vision", roles: ["Operator"] }]`);
    else entry.teams.forEach((t, j) => {
      const at = where(`.teams[${j}]`);
      const name = typeof t === 'string' ? t : isObject(t) ? t.team : undefined;
      if (typeof name !== 'string' || !TEAM_NAME.test(name)) {
        problems.push(`${at} is ${JSON.stringify(t)}: expected a team name (1–40 letters, digits, spaces, ".", "_" or "-") or { team, roles }`);
        return;
      }
      if (isObject(t) && Object.keys(t).some((k) => k !== 'team' && k !== 'roles')) {
        problems.push(`${at}: unknown key (known: team, roles)`);
        return;
      }
      const teamRoles = isObject(t) && t.roles !== undefined ? roleList(t.roles, where(`.teams[${j}].roles`), problems) : [];
      if (teamRoles) teams.push({ team: name, roles: teamRoles });
    });
  }
  if (entry.roles === undefined && entry.teams === undefined) problems.push(`${where()}: gives neither "roles" nor "teams", so it would do nothing`);
  if (problems.length > before) return undefined;
  return { ...(hasGroup ? { group: entry.group as string } : {}), ...(claim ? { claim } : {}), roles, teams };
}
