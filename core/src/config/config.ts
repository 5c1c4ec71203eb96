import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import YAML from 'yaml';
import { readOidcConfig, type OidcConfig } from './oidc-config.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface CoreConfig {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  adminPassword: string | undefined;
  secretKey: string | undefined;
  logLevel: LogLevel;
  publicUrl: string | undefined;
  /** Folders scanned for plugins, each holding one plugin per sub-folder. */
  pluginDirs: string[];
  /** When set, `/metrics` requires `Authorization: Bearer <token>`. */
  metricsToken: string | undefined;
  /** Seconds an access token lives. */
  accessTokenTtl: number;
  /** Seconds a graceful shutdown waits for requests in flight. */
  shutdownGrace: number;
  /** The web shell's production build, served at `/` (default: the repository's web-shell/dist). */
  webDir: string;
  /** Shortest password accepted for local accounts. */
  passwordMinLength: number;
  /** Where the audit chain's head is exported outside the database (docs/audit.md); unset: no export. */
  auditHeadFile: string | undefined;
  /** Seconds between audit head exports. */
  auditHeadInterval: number;
  /** Single sign-on (AIPLAT_OIDC_* and the file's `oidc` object, core/src/config/oidc-config.ts); unset: off. */
  oidc: OidcConfig | undefined;
  /** This machine's node id in the GPU ledger (default: the host name). */
  nodeId: string | undefined;
  /** How the scheduler picks among nodes and cards that fit: fill up (`binpack`) or even out (`spread`). */
  schedulerStrategy: 'binpack' | 'spread';
  /** Whether higher-priority work may stop preemptible lower-priority work to get its cards. */
  schedulerPreemption: boolean;
  /** The time zone quota periods (day, week, month) start in, e.g. Asia/Shanghai. */
  quotaTimeZone: string;
  /** Seconds between SIGTERM and SIGKILL when a replica is stopped (cancel, preemption, timeout). */
  stopGrace: number;
  /** Simulated GPUs for tests and development: a capture name (core/simulated/nvidia-smi) replayed by a fake nvidia-smi. Unset: off. */
  simulatedGpus: string | undefined;
  /** How many simulated nodes carry the simulated GPUs. */
  simulatedNodes: number;
  /** Seconds between two samples of every card (utilisation, memory, temperature, power, processes). */
  gpuSampleSeconds: number;
  /** Hours GPU samples are kept. */
  gpuMetricsRetentionHours: number;
  /** Plugin registries the marketplace reads: registry URLs or folders holding a registry's static mirror (docs/adr/0010). */
  registries: string[];
  /** A JSON file listing the publisher keys whose signed packages install ([{ keyId, publisher, publicKey }]); unset: none trusted. */
  trustedKeysFile: string | undefined;
  /** Largest plugin package accepted, in MiB (download or upload). */
  packageMaxMiB: number;
  /** Where blobs live: the data folder's `storage/` (`folder`) or an S3-compatible bucket (`s3`, the s3* settings). */
  storage: 'folder' | 's3';
  /** The S3-compatible server's URL; unset: AWS S3. */
  s3Endpoint: string | undefined;
  s3Region: string;
  /** Required when `storage` is `s3`. */
  s3Bucket: string | undefined;
  /** Prepended to every object name (a "/" is added when it does not end with one). */
  s3Prefix: string | undefined;
  /** With s3SecretAccessKey; both unset: the AWS SDK's default credentials (AWS_* variables, instance role). */
  s3AccessKeyId: string | undefined;
  /** A secret: hidden in configuration errors and redacted from logs. */
  s3SecretAccessKey: string | undefined;
  /** Path-style URLs (http://host/bucket/key); unset: true when s3Endpoint is set, else false. */
  s3ForcePathStyle: boolean | undefined;
}

/** One entry per setting: the environment variable, the key in the optional config file, and its schema. */
const settings = {
  port: { env: 'PORT', schema: { type: 'integer', minimum: 0, maximum: 65535 }, default: 8080 },
  host: { env: 'HOST', schema: { type: 'string', minLength: 1 }, default: '0.0.0.0' },
  dataDir: { env: 'AIPLAT_DATA_DIR', schema: { type: 'string', minLength: 1 }, default: './.aiplat-data' },
  databaseUrl: { env: 'DATABASE_URL', schema: { type: 'string', pattern: '^postgres(ql)?://' }, default: undefined },
  redisUrl: { env: 'REDIS_URL', schema: { type: 'string', pattern: '^rediss?://' }, default: undefined },
  adminPassword: { env: 'AIPLAT_ADMIN_PASSWORD', schema: { type: 'string', minLength: 12 }, default: undefined },
  secretKey: { env: 'AIPLAT_SECRET_KEY', schema: { type: 'string', minLength: 32 }, default: undefined },
  logLevel: {
    env: 'LOG_LEVEL',
    schema: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    default: 'info',
  },
  publicUrl: { env: 'PUBLIC_URL', schema: { type: 'string', pattern: '^https?://[^\\s/]+(/[^\\s]*)?$' }, default: undefined },
  pluginDirs: {
    env: 'AIPLAT_PLUGIN_DIRS',
    schema: { type: 'array', items: { type: 'string', minLength: 1 } },
    default: undefined,
  },
  metricsToken: { env: 'AIPLAT_METRICS_TOKEN', schema: { type: 'string', minLength: 16 }, default: undefined },
  accessTokenTtl: { env: 'AIPLAT_ACCESS_TOKEN_TTL', schema: { type: 'integer', minimum: 30, maximum: 86400 }, default: 900 },
  shutdownGrace: { env: 'AIPLAT_SHUTDOWN_GRACE', schema: { type: 'integer', minimum: 0, maximum: 600 }, default: 10 },
  webDir: { env: 'AIPLAT_WEB_DIR', schema: { type: 'string', minLength: 1 }, default: undefined },
  passwordMinLength: { env: 'AIPLAT_PASSWORD_MIN_LENGTH', schema: { type: 'integer', minimum: 8, maximum: 128 }, default: 12 },
  auditHeadFile: { env: 'AIPLAT_AUDIT_HEAD_FILE', schema: { type: 'string', minLength: 1 }, default: undefined },
  auditHeadInterval: { env: 'AIPLAT_AUDIT_HEAD_INTERVAL', schema: { type: 'integer', minimum: 1, maximum: 86400 }, default: 60 },
  nodeId: { env: 'AIPLAT_NODE_ID', schema: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' }, default: undefined },
  schedulerStrategy: { env: 'AIPLAT_SCHEDULER_STRATEGY', schema: { enum: ['binpack', 'spread'] }, default: 'binpack' },
  schedulerPreemption: { env: 'AIPLAT_SCHEDULER_PREEMPTION', schema: { type: 'boolean' }, default: false },
  quotaTimeZone: { env: 'AIPLAT_QUOTA_TIMEZONE', schema: { type: 'string', minLength: 1, maxLength: 64 }, default: 'UTC' },
  stopGrace: { env: 'AIPLAT_STOP_GRACE', schema: { type: 'integer', minimum: 0, maximum: 3600 }, default: 10 },
  simulatedGpus: { env: 'AIPLAT_SIMULATED_GPUS', schema: { type: 'string', minLength: 1 }, default: undefined },
  simulatedNodes: { env: 'AIPLAT_SIMULATED_NODES', schema: { type: 'integer', minimum: 1, maximum: 1000 }, default: 1 },
  gpuSampleSeconds: { env: 'AIPLAT_GPU_SAMPLE_SECONDS', schema: { type: 'integer', minimum: 1, maximum: 3600 }, default: 15 },
  gpuMetricsRetentionHours: { env: 'AIPLAT_GPU_METRICS_RETENTION_HOURS', schema: { type: 'integer', minimum: 1, maximum: 8760 }, default: 168 },
  registries: { env: 'AIPLAT_REGISTRIES', schema: { type: 'array', items: { type: 'string', minLength: 1 } }, default: [] },
  trustedKeysFile: { env: 'AIPLAT_TRUSTED_KEYS', schema: { type: 'string', minLength: 1 }, default: undefined },
  packageMaxMiB: { env: 'AIPLAT_PACKAGE_MAX_MIB', schema: { type: 'integer', minimum: 1, maximum: 65536 }, default: 2048 },
  storage: { env: 'AIPLAT_STORAGE', schema: { enum: ['folder', 's3'] }, default: 'folder' },
  s3Endpoint: { env: 'AIPLAT_S3_ENDPOINT', schema: { type: 'string', pattern: '^https?://[^\\s/]+(/[^\\s]*)?$' }, default: undefined },
  s3Region: { env: 'AIPLAT_S3_REGION', schema: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' }, default: 'us-east-1' },
  s3Bucket: { env: 'AIPLAT_S3_BUCKET', schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$' }, default: undefined },
  s3Prefix: { env: 'AIPLAT_S3_PREFIX', schema: { type: 'string', pattern: '^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/?$', maxLength: 256 }, default: undefined },
  s3AccessKeyId: { env: 'AIPLAT_S3_ACCESS_KEY_ID', schema: { type: 'string', minLength: 1 }, default: undefined },
  s3SecretAccessKey: { env: 'AIPLAT_S3_SECRET_ACCESS_KEY', schema: { type: 'string', minLength: 1 }, default: undefined },
  s3ForcePathStyle: { env: 'AIPLAT_S3_FORCE_PATH_STYLE', schema: { type: 'boolean' }, default: undefined },
} as const;

type SettingKey = keyof typeof settings;

/** Explanations a person can act on, keyed by setting. */
const hints: Partial<Record<SettingKey, string>> = {
  port: 'a TCP port number between 0 and 65535',
  databaseUrl: 'a PostgreSQL URL such as postgres://user:pass@host:5432/aiplat',
  redisUrl: 'a Redis URL such as redis://127.0.0.1:6379',
  adminPassword: 'at least 12 characters',
  secretKey: 'at least 32 characters (e.g. `openssl rand -base64 48`)',
  logLevel: 'one of fatal, error, warn, info, debug, trace, silent',
  publicUrl: 'the base URL users reach aiplat at, such as https://ai.example.com or https://example.com/aiplat',
  pluginDirs: 'a list of folders separated by the path delimiter (":" on Linux and macOS)',
  metricsToken: 'at least 16 characters',
  accessTokenTtl: 'seconds between 30 and 86400',
  shutdownGrace: 'seconds between 0 and 600',
  webDir: "the folder of the web shell's production build (web-shell/dist)",
  passwordMinLength: 'a number of characters between 8 and 128',
  auditHeadFile: 'a file path outside the data folder, ideally on other storage (e.g. /var/backups/aiplat/audit-head.json)',
  auditHeadInterval: 'seconds between 1 and 86400',
  nodeId: 'letters, digits, ".", "_" and "-" (at most 63), e.g. gpu-server-1',
  schedulerStrategy: 'binpack or spread',
  schedulerPreemption: 'true or false',
  quotaTimeZone: 'an IANA time zone name such as UTC or Asia/Shanghai',
  stopGrace: 'seconds between 0 and 3600',
  simulatedGpus: 'a capture name such as v100s-8, a100-mig, t4 or a5000-2 (core/simulated/nvidia-smi)',
  simulatedNodes: 'a number of nodes between 1 and 1000',
  gpuSampleSeconds: 'seconds between 1 and 3600',
  gpuMetricsRetentionHours: 'hours between 1 and 8760',
  registries: 'registry URLs (http:// or https://) or folders holding a copied registry, separated by ","',
  trustedKeysFile: 'the path of a JSON file listing publisher keys: [{ "keyId": …, "publisher": …, "publicKey": … }] (aiplat-plugin keygen prints one)',
  packageMaxMiB: 'MiB between 1 and 65536',
  storage: 'folder (the data folder) or s3 (an S3-compatible bucket, AIPLAT_S3_*)',
  s3Endpoint: 'the URL of an S3-compatible server, such as http://minio.local:9000 (unset: AWS S3)',
  s3Region: 'a region name such as us-east-1',
  s3Bucket: 'a bucket name: 3 to 63 lowercase letters, digits, "." and "-", such as aiplat-storage',
  s3Prefix: 'a key prefix such as aiplat/ (letters, digits, ".", "_", "-", segments separated by "/", no leading "/")',
  s3AccessKeyId: 'an access key id',
  s3SecretAccessKey: 'the secret access key of AIPLAT_S3_ACCESS_KEY_ID',
  s3ForcePathStyle: 'true or false',
};

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const ajv = new Ajv({ allErrors: true });

function fromEnv(key: SettingKey, raw: string): unknown {
  const schema = settings[key].schema as { type?: string };
  if (schema.type === 'integer') return /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : raw;
  // Registry URLs hold ":", so that list is separated by commas.
  if (schema.type === 'array') return raw.split(key === 'registries' ? ',' : path.delimiter).map((v) => v.trim()).filter(Boolean);
  if (schema.type === 'boolean') return raw.trim() === 'true' ? true : raw.trim() === 'false' ? false : raw;
  return raw;
}

function shown(key: SettingKey, value: unknown): string {
  if (key === 'adminPassword' || key === 'secretKey' || key === 'metricsToken' || key === 's3SecretAccessKey') return '(hidden)';
  if (key === 'databaseUrl' || key === 'redisUrl') return JSON.stringify(String(value).replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:••••@'));
  return JSON.stringify(value);
}

/**
 * Read the configuration from an optional file (`AIPLAT_CONFIG_FILE`, JSON or YAML, keys as in
 * CoreConfig) and the environment (which wins), check every value and report all problems at once.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): CoreConfig {
  const problems: string[] = [];
  let file: Record<string, unknown> = {};
  const configFile = env.AIPLAT_CONFIG_FILE;
  if (configFile) {
    const filePath = path.resolve(cwd, configFile);
    if (!existsSync(filePath)) {
      problems.push(`AIPLAT_CONFIG_FILE: ${filePath} does not exist`);
    } else {
      try {
        const parsed: unknown = YAML.parse(readFileSync(filePath, 'utf8'));
        if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) file = parsed as Record<string, unknown>;
        else problems.push(`AIPLAT_CONFIG_FILE: ${filePath} must hold an object of settings`);
      } catch (error) {
        problems.push(`AIPLAT_CONFIG_FILE: ${filePath} is not valid JSON or YAML: ${(error as Error).message}`);
      }
      for (const key of Object.keys(file)) {
        if (!(key in settings) && key !== 'oidc') problems.push(`${filePath}: unknown setting "${key}" (known: ${[...Object.keys(settings), 'oidc'].join(', ')})`);
      }
    }
  }

  const values: Record<string, unknown> = {};
  for (const key of Object.keys(settings) as SettingKey[]) {
    const setting = settings[key];
    const rawEnv = env[setting.env];
    let value: unknown = setting.default;
    let source = 'default';
    if (key in file) {
      value = file[key];
      source = `${configFile} (${key})`;
    }
    if (rawEnv !== undefined && rawEnv !== '') {
      value = fromEnv(key, rawEnv);
      source = setting.env;
    }
    if (value !== undefined && !ajv.validate(setting.schema, value)) {
      const hint = hints[key] ? `: expected ${hints[key]}` : `: ${ajv.errorsText(ajv.errors)}`;
      problems.push(`${source === 'default' ? setting.env : source} is ${shown(key, value)}${hint}`);
    }
    values[key] = value;
  }
  if (typeof values.quotaTimeZone === 'string') {
    try {
      new Intl.DateTimeFormat('en', { timeZone: values.quotaTimeZone });
    } catch {
      problems.push(`AIPLAT_QUOTA_TIMEZONE is ${JSON.stringify(values.quotaTimeZone)}: expected ${hints.quotaTimeZone}`);
    }
  }
  // S3 storage: the bucket is required, and the credentials go in pairs.
  if (values.storage === 's3' && values.s3Bucket === undefined) {
    problems.push(`AIPLAT_S3_BUCKET is not set: AIPLAT_STORAGE=s3 needs ${hints.s3Bucket}`);
  }
  if ((values.s3AccessKeyId === undefined) !== (values.s3SecretAccessKey === undefined)) {
    problems.push(
      `${values.s3AccessKeyId === undefined ? 'AIPLAT_S3_ACCESS_KEY_ID' : 'AIPLAT_S3_SECRET_ACCESS_KEY'} is not set: AIPLAT_S3_ACCESS_KEY_ID and AIPLAT_S3_SECRET_ACCESS_KEY go together (or set neither, for the AWS SDK's default credentials)`,
    );
  }
  // Single sign-on: AIPLAT_OIDC_* and the file's `oidc` object, checked together.
  const oidc = readOidcConfig(env, file.oidc, configFile);
  problems.push(...oidc.problems);
  if (problems.length > 0) throw new ConfigError(problems);

  const dataDir = path.resolve(cwd, values.dataDir as string);
  const pluginDirs = (values.pluginDirs as string[] | undefined)?.map((d) => path.resolve(cwd, d));
  return {
    ...(values as unknown as CoreConfig),
    dataDir,
    pluginDirs: pluginDirs ?? defaultPluginDirs(dataDir),
    publicUrl: (values.publicUrl as string | undefined)?.replace(/\/+$/, ''),
    webDir: values.webDir ? path.resolve(cwd, values.webDir as string) : path.resolve(import.meta.dirname, '../../../web-shell/dist'),
    auditHeadFile: values.auditHeadFile ? path.resolve(cwd, values.auditHeadFile as string) : undefined,
    registries: (values.registries as string[]).map((r) => (/^https?:\/\//.test(r) ? r.replace(/\/+$/, '') : path.resolve(cwd, r))),
    trustedKeysFile: values.trustedKeysFile ? path.resolve(cwd, values.trustedKeysFile as string) : undefined,
    s3Endpoint: (values.s3Endpoint as string | undefined)?.replace(/\/+$/, ''),
    oidc: oidc.config,
  };
}

/**
 * The repository's own `plugins/` and `examples/` (trusted by location). Packages installed at run
 * time live in `<data dir>/installed/` and are loaded by the installer (verified), not discovered.
 */
export function defaultPluginDirs(_dataDir: string): string[] {
  const repoRoot = path.resolve(import.meta.dirname, '../../..');
  return [path.join(repoRoot, 'plugins'), path.join(repoRoot, 'examples')];
}

/** The path prefix of PUBLIC_URL (`/aiplat` for https://example.com/aiplat), or '' when served at the root. */
export function basePath(config: Pick<CoreConfig, 'publicUrl'>): string {
  if (!config.publicUrl) return '';
  return new URL(config.publicUrl).pathname.replace(/\/+$/, '');
}
