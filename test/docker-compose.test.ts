/**
 * Validates the single-server deployment (docker-compose.yml and the Dockerfile it builds):
 *   (a) a real Compose implementation accepts the file (`config -q`), refuses it without the
 *       required secrets, and resolves the core's environment as this test does;
 *   (b) the structure: services, health-gated start order, volumes, healthchecks, and
 *       DATABASE_URL / REDIS_URL wired to the postgres / redis services with the same variables;
 *   (c) the core service's environment is a configuration the core's own `loadConfig` accepts.
 * (b) and (c) need no tool. (a) needs `docker compose` or `docker-compose`: `sh scripts/provision-compose.sh`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadConfig } from '../core/src/config/config.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const COMPOSE_FILE = path.join(ROOT, 'docker-compose.yml');
const DOCKERFILE = path.join(ROOT, 'Dockerfile');
const CONFIG_TS = path.join(ROOT, 'core/src/config/config.ts');

const composeText = readFileSync(COMPOSE_FILE, 'utf8');

/** Values for the required secrets, valid for the core (12+ and 32+ characters). */
const SECRETS = {
  AIPLAT_ADMIN_PASSWORD: 'compose-test-admin-pw',
  AIPLAT_SECRET_KEY: 'compose-test-secret-key-0123456789abcdef',
};
/** Non-default database variables: a DATABASE_URL that hard-codes the defaults shows up with these. */
const CUSTOM_DB = { POSTGRES_USER: 'u_custom', POSTGRES_PASSWORD: 'p-custom-123', POSTGRES_DB: 'd_custom' };

// ---------------------------------------------------------------------------------------------
// Interpolation as the Compose Specification defines it (the subset Compose 1.29 and 2.x share).

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Doc = { [key: string]: Json };

interface VarUse {
  name: string;
  /** '' for a bare ${VAR} or $VAR. */
  op: '' | ':-' | '-' | ':?' | '?';
  arg: string;
}

const VAR_RE = /\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*)|(\{[^}]*\}?))/g;

function interpolateString(s: string, env: Record<string, string | undefined>, uses?: VarUse[]): string {
  return s.replace(VAR_RE, (_m, dollar, braced, op, arg, bare, bad) => {
    if (dollar) return '$';
    if (bad !== undefined) throw new Error(`invalid interpolation "$${bad}" in ${JSON.stringify(s)}`);
    const name = (braced ?? bare) as string;
    const use: VarUse = { name, op: (op ?? '') as VarUse['op'], arg: arg ?? '' };
    uses?.push(use);
    const value = env[name];
    switch (use.op) {
      case ':-':
        return value === undefined || value === '' ? use.arg : value;
      case '-':
        return value === undefined ? use.arg : value;
      case ':?':
      case '?':
        if (value === undefined || (use.op === ':?' && value === '')) throw new Error(`required variable ${name} is missing: ${use.arg}`);
        return value;
      default:
        return value ?? '';
    }
  });
}

function interpolate<T extends Json>(node: T, env: Record<string, string | undefined>, uses?: VarUse[]): T {
  if (typeof node === 'string') return interpolateString(node, env, uses) as T;
  if (Array.isArray(node)) return node.map((n) => interpolate(n, env, uses)) as T;
  if (node && typeof node === 'object') {
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolate(v, env, uses)])) as T;
  }
  return node;
}

function parseCompose(text: string): Doc {
  const parsed = YAML.parseDocument(text);
  if (parsed.errors.length > 0) throw new Error(`docker-compose.yml is not valid YAML: ${parsed.errors.map((e) => e.message).join('; ')}`);
  const doc = parsed.toJS() as unknown;
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('docker-compose.yml must hold a mapping');
  return doc as Doc;
}

const asObj = (v: Json | undefined): { [key: string]: Json } =>
  v && typeof v === 'object' && !Array.isArray(v) ? v : {};

/** A service's environment as a map, from either the map or the `KEY=value` list form. */
function environmentOf(service: Json | undefined): Record<string, string> {
  const env = asObj(service).environment;
  const out: Record<string, string> = {};
  if (Array.isArray(env)) {
    for (const item of env) {
      const [k, ...rest] = String(item).split('=');
      out[k!] = rest.join('=');
    }
  } else {
    for (const [k, v] of Object.entries(asObj(env))) out[k] = v === null ? '' : String(v);
  }
  return out;
}

/** The words of a healthcheck's `test`, whatever its form. */
function healthcheckText(service: Json | undefined): string {
  const test = asObj(asObj(service).healthcheck).test;
  if (Array.isArray(test)) return test.map(String).join(' ');
  return typeof test === 'string' ? test : '';
}

/** Named volumes a service mounts, with their target paths. */
function namedMounts(service: Json | undefined): { source: string; target: string }[] {
  const volumes = asObj(service).volumes;
  if (!Array.isArray(volumes)) return [];
  return volumes.flatMap((v) => {
    if (typeof v === 'string') {
      const [source, target] = v.split(':');
      return source && target && !source.startsWith('.') && !source.startsWith('/') ? [{ source, target }] : [];
    }
    const o = asObj(v);
    return o.type === 'volume' || (o.type === undefined && typeof o.source === 'string')
      ? [{ source: String(o.source), target: String(o.target) }]
      : [];
  });
}

/** Container ports a service publishes. */
function publishedTargets(service: Json | undefined): number[] {
  const ports = asObj(service).ports;
  if (!Array.isArray(ports)) return [];
  return ports.map((p) => (typeof p === 'object' && p !== null ? Number(asObj(p).target) : Number(String(p).split(':').pop()!.split('/')[0])));
}

// ---------------------------------------------------------------------------------------------
// The checks, as functions returning every problem found (so a failure names them all, and the
// self-tests below can show each check catching a broken file).

/** The environment variable names the core reads: the `env:` entries of `settings` in config.ts. */
function coreEnvNames(): Set<string> {
  const src = readFileSync(CONFIG_TS, 'utf8');
  const start = src.indexOf('const settings = {');
  const end = src.indexOf('} as const;', start);
  if (start < 0 || end < 0) throw new Error(`cannot find the settings object in ${CONFIG_TS}`);
  const names = new Set([...src.slice(start, end).matchAll(/\benv:\s*'([A-Z0-9_]+)'/g)].map((m) => m[1]!));
  names.add('AIPLAT_CONFIG_FILE');
  return names;
}

/** Variables the header comment documents: lines like `#   NAME   required|default ...`. */
function documentedVars(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^#\s+([A-Z][A-Z0-9_]*)\s+(required|default)\b(.*)$/gm)) out.set(m[1]!, `${m[2]}${m[3]}`);
  return out;
}

function checkVariables(text: string, doc: Doc): string[] {
  const problems: string[] = [];
  const uses: VarUse[] = [];
  try {
    interpolate(doc, { ...SECRETS }, uses);
  } catch (error) {
    problems.push((error as Error).message);
  }
  const documented = documentedVars(text);
  for (const use of uses) {
    if (!documented.has(use.name)) problems.push(`\${${use.name}} is not documented in the header comment of docker-compose.yml`);
    if (use.op === '') problems.push(`\${${use.name}} has neither a default (:-) nor a required message (:?)`);
    if ((use.op === ':?' || use.op === '?') && use.arg.trim() === '') problems.push(`\${${use.name}:?} needs a message saying what to set`);
    if ((use.op === ':?' || use.op === '?') && !documented.get(use.name)?.startsWith('required')) {
      problems.push(`${use.name} is required but not documented as "required"`);
    }
  }
  return problems;
}

function checkStructure(doc: Doc): string[] {
  const problems: string[] = [];
  // The structure is checked with non-default database variables, so that wiring that only works
  // with the defaults is caught.
  const resolved = interpolate(doc, { ...SECRETS, ...CUSTOM_DB });
  const services = asObj(resolved.services);
  const topVolumes = asObj(resolved.volumes);
  for (const name of ['core', 'postgres', 'redis', 'registry']) if (!(name in services)) problems.push(`service "${name}" is missing`);
  const { core, postgres, redis } = services;

  // core
  if (core !== undefined) {
    const c = asObj(core);
    if (!c.build) problems.push('core: must be built from this repository (build: .)');
    if (c.restart !== 'unless-stopped') problems.push(`core: restart is ${JSON.stringify(c.restart)}, expected "unless-stopped"`);
    const env = environmentOf(core);
    const port = Number(env.PORT ?? 8080);
    if (!publishedTargets(core).includes(port)) problems.push(`core: port ${port} (PORT) is not published`);
    const deps = asObj(c.depends_on);
    for (const dep of ['postgres', 'redis']) {
      if (asObj(deps[dep]).condition !== 'service_healthy') problems.push(`core: must depend on ${dep} with condition: service_healthy`);
    }
    const hc = healthcheckText(core);
    if (!hc.includes('/api/v1/health')) problems.push('core: healthcheck must probe /api/v1/health');
    if (!hc.includes(`:${port}/`) && !hc.includes('PORT')) problems.push(`core: healthcheck must probe the port the core listens on (${port})`);
    if (!env.AIPLAT_DATA_DIR) problems.push('core: AIPLAT_DATA_DIR is not set');
    else if (!namedMounts(core).some((m) => m.target === env.AIPLAT_DATA_DIR)) {
      problems.push(`core: no named volume is mounted at AIPLAT_DATA_DIR (${env.AIPLAT_DATA_DIR})`);
    }

    // DATABASE_URL → the postgres service, with the postgres service's user, password and database.
    const pgEnv = environmentOf(postgres);
    try {
      const db = new URL(env.DATABASE_URL ?? '');
      if (!/^postgres(ql)?:$/.test(db.protocol)) problems.push(`core: DATABASE_URL scheme is ${db.protocol}`);
      if (db.hostname !== 'postgres' || !(db.hostname in services)) problems.push(`core: DATABASE_URL host is "${db.hostname}", expected the postgres service`);
      if ((db.port || '5432') !== '5432') problems.push(`core: DATABASE_URL port is ${db.port}, PostgreSQL listens on 5432`);
      if (decodeURIComponent(db.username) !== (pgEnv.POSTGRES_USER ?? 'postgres')) {
        problems.push(`core: DATABASE_URL user "${db.username}" is not the postgres service's POSTGRES_USER "${pgEnv.POSTGRES_USER}"`);
      }
      if (decodeURIComponent(db.password) !== pgEnv.POSTGRES_PASSWORD) {
        problems.push("core: DATABASE_URL password is not the postgres service's POSTGRES_PASSWORD");
      }
      const dbName = decodeURIComponent(db.pathname.replace(/^\//, ''));
      if (dbName !== (pgEnv.POSTGRES_DB ?? pgEnv.POSTGRES_USER)) {
        problems.push(`core: DATABASE_URL database "${dbName}" is not the postgres service's POSTGRES_DB "${pgEnv.POSTGRES_DB}"`);
      }
    } catch {
      problems.push(`core: DATABASE_URL ${JSON.stringify(env.DATABASE_URL)} is not a URL`);
    }

    // REDIS_URL → the redis service.
    try {
      const r = new URL(env.REDIS_URL ?? '');
      if (!/^rediss?:$/.test(r.protocol)) problems.push(`core: REDIS_URL scheme is ${r.protocol}`);
      if (r.hostname !== 'redis' || !(r.hostname in services)) problems.push(`core: REDIS_URL host is "${r.hostname}", expected the redis service`);
      if ((r.port || '6379') !== '6379') problems.push(`core: REDIS_URL port is ${r.port}, Redis listens on 6379`);
    } catch {
      problems.push(`core: REDIS_URL ${JSON.stringify(env.REDIS_URL)} is not a URL`);
    }
  }

  // postgres
  if (postgres !== undefined) {
    const p = asObj(postgres);
    if (!/^postgres:16(\b|$)/.test(String(p.image))) problems.push(`postgres: image is ${JSON.stringify(p.image)}, expected postgres:16`);
    if (!healthcheckText(postgres).includes('pg_isready')) problems.push('postgres: healthcheck must run pg_isready');
    if (!environmentOf(postgres).POSTGRES_PASSWORD) problems.push('postgres: POSTGRES_PASSWORD is not set (the image refuses to start)');
    if (!namedMounts(postgres).some((m) => m.target === '/var/lib/postgresql/data')) problems.push('postgres: no named volume at /var/lib/postgresql/data');
  }

  // redis
  if (redis !== undefined) {
    const r = asObj(redis);
    if (!/^redis:7(\b|$)/.test(String(r.image))) problems.push(`redis: image is ${JSON.stringify(r.image)}, expected redis:7`);
    if (!/redis-cli\b.*\bping\b/.test(healthcheckText(redis))) problems.push('redis: healthcheck must run redis-cli ping');
    const command = Array.isArray(r.command) ? r.command.join(' ') : String(r.command ?? '');
    if (!/--appendonly\s+yes/.test(command)) problems.push('redis: must run with --appendonly yes');
    if (!namedMounts(redis).some((m) => m.target === '/data')) problems.push('redis: no named volume at /data');
  }

  // Every service: a healthcheck and a restart policy; every named volume declared at top level.
  for (const [name, service] of Object.entries(services)) {
    if (!healthcheckText(service)) problems.push(`${name}: has no healthcheck`);
    if (!asObj(service).restart) problems.push(`${name}: has no restart policy`);
    for (const m of namedMounts(service)) {
      if (!(m.source in topVolumes)) problems.push(`${name}: volume "${m.source}" is not declared under the top-level volumes:`);
    }
  }
  return problems;
}

/** The core service's environment with every variable at its default (the required ones given). */
function coreEnvironment(doc: Doc, extra: Record<string, string> = {}): Record<string, string> {
  const resolved = interpolate(doc, { ...SECRETS, ...extra });
  return environmentOf(asObj(resolved.services).core);
}

function checkCoreConfig(doc: Doc): string[] {
  const problems: string[] = [];
  const known = coreEnvNames();
  let env: Record<string, string>;
  try {
    env = coreEnvironment(doc);
  } catch (error) {
    return [(error as Error).message];
  }
  for (const name of Object.keys(env)) {
    if (!known.has(name)) problems.push(`core: ${name} is not a variable the core reads (it reads ${[...known].join(', ')})`);
  }
  const cwd = mkdtempSync(path.join(tmpdir(), 'aiplat-compose-'));
  try {
    const config = loadConfig(env, cwd);
    if (config.port !== Number(env.PORT)) problems.push(`core: loadConfig read port ${config.port}`);
    if (!config.databaseUrl) problems.push('core: DATABASE_URL is not set: the core would use its embedded database');
    if (!config.redisUrl) problems.push('core: REDIS_URL is not set');
    if (!config.adminPassword) problems.push('core: AIPLAT_ADMIN_PASSWORD is not set');
    if (!config.secretKey) problems.push('core: AIPLAT_SECRET_KEY is not set');
    if (!config.publicUrl) problems.push('core: PUBLIC_URL is not set');
    if (config.dataDir !== env.AIPLAT_DATA_DIR) problems.push(`core: AIPLAT_DATA_DIR ${env.AIPLAT_DATA_DIR} must be absolute`);
  } catch (error) {
    problems.push(`core: loadConfig rejects the compose environment: ${(error as Error).message}`);
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
  return problems;
}

const doc = parseCompose(composeText);

/** Fails with every problem listed in the message. */
function expectNoProblems(problems: string[]): void {
  expect(problems, `docker-compose.yml:\n  - ${problems.join('\n  - ')}\n`).toEqual([]);
}

/** A copy of the compose file with one edit, for the self-tests. */
function mutated(edit: (d: Doc) => void): Doc {
  const copy = structuredClone(doc);
  edit(copy);
  return copy;
}
const coreEnvOf = (d: Doc) => asObj(asObj(asObj(d.services).core).environment);

// ---------------------------------------------------------------------------------------------

describe('docker-compose.yml structure (no tool needed)', () => {
  it('uses only documented variables, each with a default or a required message', () => {
    expectNoProblems(checkVariables(composeText, doc));
  });

  it('has core, postgres and redis wired together with healthchecks, volumes and matching URLs', () => {
    expectNoProblems(checkStructure(doc));
  });

  it('gives the core an environment its loadConfig accepts', () => {
    expectNoProblems(checkCoreConfig(doc));
  });

  it('matches the Dockerfile (port, data folder, health probe, non-root user)', () => {
    const dockerfile = readFileSync(DOCKERFILE, 'utf8');
    const env = coreEnvironment(doc);
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE\\s+${env.PORT}\\b`, 'm'));
    expect(dockerfile).toMatch(new RegExp(`AIPLAT_DATA_DIR=${env.AIPLAT_DATA_DIR}\\b`));
    expect(dockerfile).toMatch(/^HEALTHCHECK\b[\s\S]*\/api\/v1\/health/m);
    const users = [...dockerfile.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]);
    expect(users.at(-1), 'the image must end with a non-root USER').toBeDefined();
    expect(users.at(-1)).not.toMatch(/^(root|0)(:.*)?$/);
    expect(dockerfile).toMatch(/^CMD\s+\["node",\s*"--import",\s*"tsx",\s*"core\/src\/main\.ts"\]/m);
  });

  // The checks above must be able to fail: each broken copy of the file must be caught.
  describe('catches a broken file', () => {
    const cases: [string, Doc, (d: Doc) => string[], RegExp][] = [
      ['a removed service', mutated((d) => delete asObj(d.services).redis), checkStructure, /service "redis" is missing/],
      ['a DATABASE_URL on the wrong host', mutated((d) => {
        coreEnvOf(d).DATABASE_URL = 'postgres://${POSTGRES_USER:-aiplat}:${POSTGRES_PASSWORD:-aiplat}@localhost:5432/${POSTGRES_DB:-aiplat}';
      }), checkStructure, /DATABASE_URL host is "localhost"/],
      ['a DATABASE_URL that hard-codes the password', mutated((d) => {
        coreEnvOf(d).DATABASE_URL = 'postgres://${POSTGRES_USER:-aiplat}:aiplat@postgres:5432/${POSTGRES_DB:-aiplat}';
      }), checkStructure, /DATABASE_URL password/],
      ['a DATABASE_URL naming another database', mutated((d) => {
        coreEnvOf(d).DATABASE_URL = 'postgres://${POSTGRES_USER:-aiplat}:${POSTGRES_PASSWORD:-aiplat}@postgres:5432/other';
      }), checkStructure, /DATABASE_URL database "other"/],
      ['a REDIS_URL on the wrong host', mutated((d) => (coreEnvOf(d).REDIS_URL = 'redis://127.0.0.1:6379')), checkStructure, /REDIS_URL host/],
      ['a plain dependency without health gating', mutated((d) => (asObj(asObj(d.services).core).depends_on = ['postgres', 'redis'])), checkStructure, /service_healthy/],
      ['a missing healthcheck', mutated((d) => delete asObj(asObj(d.services).postgres).healthcheck), checkStructure, /pg_isready/],
      ['an undeclared volume', mutated((d) => delete asObj(d.volumes)['redis-data']), checkStructure, /"redis-data" is not declared/],
      ['an undocumented variable', mutated((d) => (coreEnvOf(d).LOG_LEVEL = '${AIPLAT_LOG:-info}')), (d) => checkVariables(composeText, d), /AIPLAT_LOG.*not documented/],
      ['a variable with no default', mutated((d) => (coreEnvOf(d).LOG_LEVEL = '${LOG_LEVEL}')), (d) => checkVariables(composeText, d), /neither a default/],
      ['a misspelt core variable', mutated((d) => (coreEnvOf(d).DATABASE_URI = 'postgres://x@postgres/aiplat')), checkCoreConfig, /DATABASE_URI is not a variable the core reads/],
      ['a value the core refuses', mutated((d) => (coreEnvOf(d).LOG_LEVEL = 'verbose')), checkCoreConfig, /loadConfig rejects.*LOG_LEVEL/s],
      ['a database URL the core refuses', mutated((d) => (coreEnvOf(d).DATABASE_URL = 'mysql://aiplat@postgres/aiplat')), checkCoreConfig, /loadConfig rejects.*DATABASE_URL/s],
    ];
    it.each(cases)('%s', (_label, broken, check, expected) => {
      const problems = check(broken);
      expect(problems.join('\n')).toMatch(expected);
    });
  });
});

// ---------------------------------------------------------------------------------------------

/** The Compose implementation on this machine: `docker compose` (v2) or `docker-compose` (1.x), or null. */
function findCompose(): string[] | null {
  for (const cmd of [['docker', 'compose'], ['docker-compose']]) {
    const r = spawnSync(cmd[0]!, [...cmd.slice(1), 'version'], { encoding: 'utf8', timeout: 30_000 });
    if (r.status === 0) return cmd;
  }
  return null;
}

const NO_COMPOSE =
  'No Compose implementation found (tried `docker compose version` and `docker-compose version`). ' +
  "Provision one with `sh scripts/provision-compose.sh` (installs Debian's docker-compose package when missing; needs root and apt), " +
  'or install Docker Compose: https://docs.docker.com/compose/install/';

describe('docker-compose.yml accepted by a real Compose implementation', () => {
  const compose = findCompose();
  const workDir = mkdtempSync(path.join(tmpdir(), 'aiplat-compose-cli-'));
  const emptyEnvFile = path.join(workDir, 'empty.env');
  writeFileSync(emptyEnvFile, '');
  afterAll(() => rmSync(workDir, { recursive: true, force: true }));

  // Variables the file reads are removed from the inherited environment, and an empty --env-file
  // keeps a developer's .env out, so the results do not depend on who runs the test.
  const uses: VarUse[] = [];
  interpolate(doc, { ...SECRETS }, uses);
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !uses.some((u) => u.name === k)));

  function run(args: string[], vars: Record<string, string>) {
    if (!compose) throw new Error(NO_COMPOSE);
    return spawnSync(compose[0]!, [...compose.slice(1), '--env-file', emptyEnvFile, '-f', COMPOSE_FILE, '--project-directory', ROOT, ...args], {
      encoding: 'utf8',
      env: { ...inherited, ...vars },
      timeout: 60_000,
    });
  }

  it('finds docker compose or docker-compose', () => {
    expect(compose, NO_COMPOSE).not.toBeNull();
  });

  it('accepts the file: `config -q` succeeds with the required secrets set', () => {
    const r = run(['config', '-q'], SECRETS);
    expect(r.error, String(r.error)).toBeUndefined();
    expect(r.status, `${compose?.join(' ')} config -q failed:\n${r.stderr}`).toBe(0);
  });

  it('refuses to start without AIPLAT_ADMIN_PASSWORD, saying what to set', () => {
    const r = run(['config', '-q'], { AIPLAT_SECRET_KEY: SECRETS.AIPLAT_SECRET_KEY });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/AIPLAT_ADMIN_PASSWORD/);
    expect(r.stderr).toMatch(/at least 12 characters/);
  });

  it("resolves the core's environment exactly as this test does", () => {
    const r = run(['config'], { ...SECRETS, ...CUSTOM_DB });
    expect(r.status, r.stderr).toBe(0);
    const resolved = YAML.parse(r.stdout) as Doc;
    expect(environmentOf(asObj(resolved.services).core)).toEqual(coreEnvironment(doc, CUSTOM_DB));
    expect(environmentOf(asObj(resolved.services).postgres)).toMatchObject(CUSTOM_DB);
    expect(Object.keys(asObj(resolved.services)).sort()).toEqual(['core', 'postgres', 'redis', 'registry']);
  });
});
