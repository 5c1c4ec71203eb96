import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { basePath, ConfigError, loadConfig } from './config.js';

const problems = (env: Record<string, string>, cwd = '/srv'): string[] => {
  try {
    loadConfig(env, cwd);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
};

describe('loadConfig', () => {
  it('has working defaults', () => {
    const config = loadConfig({}, '/srv');
    expect(config).toMatchObject({ port: 8080, dataDir: '/srv/.aiplat-data', logLevel: 'info', databaseUrl: undefined, redisUrl: undefined, accessTokenTtl: 900 });
    // The repository's own plugins and examples; installed packages are loaded by the installer, not discovered.
    expect(config.pluginDirs.map((d) => path.basename(d))).toEqual(['plugins', 'examples']);
    expect(config).toMatchObject({ registries: [], trustedKeysFile: undefined, packageMaxMiB: 2048 });
  });

  it('reads registries separated by commas (URLs hold ":") and resolves folders', () => {
    const config = loadConfig({ AIPLAT_REGISTRIES: 'http://registry.local:8090/, ./mirror', AIPLAT_TRUSTED_KEYS: 'keys.json' }, '/srv');
    expect(config.registries).toEqual(['http://registry.local:8090', '/srv/mirror']);
    expect(config.trustedKeysFile).toBe('/srv/keys.json');
  });

  it('reads the environment', () => {
    const config = loadConfig(
      { PORT: '9000', AIPLAT_DATA_DIR: 'data', DATABASE_URL: 'postgres://u:p@db:5432/aiplat', REDIS_URL: 'redis://cache:6379', LOG_LEVEL: 'debug', PUBLIC_URL: 'https://example.com/aiplat/', AIPLAT_PLUGIN_DIRS: `a${path.delimiter}/b` },
      '/srv',
    );
    expect(config).toMatchObject({ port: 9000, dataDir: '/srv/data', databaseUrl: 'postgres://u:p@db:5432/aiplat', redisUrl: 'redis://cache:6379', logLevel: 'debug', publicUrl: 'https://example.com/aiplat', pluginDirs: ['/srv/a', '/b'] });
    expect(basePath(config)).toBe('/aiplat');
  });

  it('names every bad value with what it expects, hiding secrets', () => {
    expect(problems({ PORT: '99999', AIPLAT_SECRET_KEY: 'short', REDIS_URL: 'http://x', PUBLIC_URL: 'example.com' })).toEqual([
      'PORT is 99999: expected a TCP port number between 0 and 65535',
      'REDIS_URL is "http://x": expected a Redis URL such as redis://127.0.0.1:6379',
      'AIPLAT_SECRET_KEY is (hidden): expected at least 32 characters (e.g. `openssl rand -base64 48`)',
      'PUBLIC_URL is "example.com": expected the base URL users reach aiplat at, such as https://ai.example.com or https://example.com/aiplat',
    ]);
    expect(problems({ DATABASE_URL: 'mysql://root:hunter2@db/x' })).toEqual([
      'DATABASE_URL is "mysql://root:••••@db/x": expected a PostgreSQL URL such as postgres://user:pass@host:5432/aiplat',
    ]);
  });

  it('reads an optional config file, with the environment winning, and refuses unknown keys', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-config-'));
    writeFileSync(path.join(dir, 'aiplat.yaml'), 'port: 7000\nlogLevel: warn\n');
    expect(loadConfig({ AIPLAT_CONFIG_FILE: 'aiplat.yaml' }, dir)).toMatchObject({ port: 7000, logLevel: 'warn' });
    expect(loadConfig({ AIPLAT_CONFIG_FILE: 'aiplat.yaml', PORT: '7001' }, dir).port).toBe(7001);
    writeFileSync(path.join(dir, 'bad.yaml'), 'port: high\ncolour: red\n');
    const found = problems({ AIPLAT_CONFIG_FILE: 'bad.yaml' }, dir);
    expect(found).toContain(`${path.join(dir, 'bad.yaml')}: unknown setting "colour" (known: port, host, dataDir, databaseUrl, redisUrl, adminPassword, secretKey, logLevel, publicUrl, pluginDirs, metricsToken, accessTokenTtl, shutdownGrace, webDir, passwordMinLength, auditHeadFile, auditHeadInterval, nodeId, schedulerStrategy, schedulerPreemption, quotaTimeZone, stopGrace, simulatedGpus, simulatedNodes, gpuSampleSeconds, gpuMetricsRetentionHours, registries, trustedKeysFile, packageMaxMiB, storage, s3Endpoint, s3Region, s3Bucket, s3Prefix, s3AccessKeyId, s3SecretAccessKey, s3ForcePathStyle, oidc)`);
    expect(found).toContain('bad.yaml (port) is "high": expected a TCP port number between 0 and 65535');
    expect(problems({ AIPLAT_CONFIG_FILE: 'missing.yaml' }, dir)).toEqual([`AIPLAT_CONFIG_FILE: ${path.join(dir, 'missing.yaml')} does not exist`]);
  });
});

describe('storage settings', () => {
  it('stores in the data folder by default; AIPLAT_STORAGE=s3 reads the bucket, endpoint, prefix and credentials', () => {
    expect(loadConfig({}, '/srv')).toMatchObject({
      storage: 'folder',
      s3Endpoint: undefined,
      s3Region: 'us-east-1',
      s3Bucket: undefined,
      s3Prefix: undefined,
      s3AccessKeyId: undefined,
      s3SecretAccessKey: undefined,
      s3ForcePathStyle: undefined,
    });
    const config = loadConfig(
      {
        AIPLAT_STORAGE: 's3',
        AIPLAT_S3_ENDPOINT: 'http://minio.local:9000/',
        AIPLAT_S3_REGION: 'eu-central-1',
        AIPLAT_S3_BUCKET: 'aiplat-storage',
        AIPLAT_S3_PREFIX: 'prod/aiplat/',
        AIPLAT_S3_ACCESS_KEY_ID: 'AKIAEXAMPLE',
        AIPLAT_S3_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
        AIPLAT_S3_FORCE_PATH_STYLE: 'false',
      },
      '/srv',
    );
    expect(config).toMatchObject({
      storage: 's3',
      s3Endpoint: 'http://minio.local:9000',
      s3Region: 'eu-central-1',
      s3Bucket: 'aiplat-storage',
      s3Prefix: 'prod/aiplat/',
      s3AccessKeyId: 'AKIAEXAMPLE',
      s3SecretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      s3ForcePathStyle: false,
    });
    // AWS itself: no endpoint, and credentials from the SDK's default chain.
    expect(loadConfig({ AIPLAT_STORAGE: 's3', AIPLAT_S3_BUCKET: 'my.bucket-1' }, '/srv')).toMatchObject({ s3Endpoint: undefined, s3AccessKeyId: undefined, s3ForcePathStyle: undefined });
  });

  it('names every S3 problem at start, hiding the secret access key', () => {
    expect(problems({ AIPLAT_STORAGE: 'minio' })).toEqual(['AIPLAT_STORAGE is "minio": expected folder (the data folder) or s3 (an S3-compatible bucket, AIPLAT_S3_*)']);
    expect(problems({ AIPLAT_STORAGE: 's3' })).toEqual([
      'AIPLAT_S3_BUCKET is not set: AIPLAT_STORAGE=s3 needs a bucket name: 3 to 63 lowercase letters, digits, "." and "-", such as aiplat-storage',
    ]);
    expect(
      problems({ AIPLAT_STORAGE: 's3', AIPLAT_S3_BUCKET: 'My_Bucket', AIPLAT_S3_ENDPOINT: 'minio:9000', AIPLAT_S3_PREFIX: '/abs//x', AIPLAT_S3_FORCE_PATH_STYLE: 'yes', AIPLAT_S3_ACCESS_KEY_ID: 'AKIAEXAMPLE' }),
    ).toEqual([
      'AIPLAT_S3_ENDPOINT is "minio:9000": expected the URL of an S3-compatible server, such as http://minio.local:9000 (unset: AWS S3)',
      'AIPLAT_S3_BUCKET is "My_Bucket": expected a bucket name: 3 to 63 lowercase letters, digits, "." and "-", such as aiplat-storage',
      'AIPLAT_S3_PREFIX is "/abs//x": expected a key prefix such as aiplat/ (letters, digits, ".", "_", "-", segments separated by "/", no leading "/")',
      'AIPLAT_S3_FORCE_PATH_STYLE is "yes": expected true or false',
      'AIPLAT_S3_SECRET_ACCESS_KEY is not set: AIPLAT_S3_ACCESS_KEY_ID and AIPLAT_S3_SECRET_ACCESS_KEY go together (or set neither, for the AWS SDK\'s default credentials)',
    ]);
    expect(problems({ AIPLAT_S3_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' })).toEqual([
      'AIPLAT_S3_ACCESS_KEY_ID is not set: AIPLAT_S3_ACCESS_KEY_ID and AIPLAT_S3_SECRET_ACCESS_KEY go together (or set neither, for the AWS SDK\'s default credentials)',
    ]);
    // A bad secret is never echoed.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-config-'));
    writeFileSync(path.join(dir, 'aiplat.yaml'), 'storage: s3\ns3Bucket: aiplat-storage\ns3AccessKeyId: AKIAEXAMPLE\ns3SecretAccessKey: [not, a, string]\n');
    const found = problems({ AIPLAT_CONFIG_FILE: 'aiplat.yaml' }, dir);
    expect(found).toEqual(['aiplat.yaml (s3SecretAccessKey) is (hidden): expected the secret access key of AIPLAT_S3_ACCESS_KEY_ID']);
  });
});

describe('scheduler settings', () => {
  it('reads booleans, strategies and time zones, and names bad ones', () => {
    const config = loadConfig({ AIPLAT_SCHEDULER_PREEMPTION: 'true', AIPLAT_SCHEDULER_STRATEGY: 'spread', AIPLAT_QUOTA_TIMEZONE: 'Asia/Shanghai', AIPLAT_SIMULATED_NODES: '4' }, os.tmpdir());
    expect(config.schedulerPreemption).toBe(true);
    expect(config.schedulerStrategy).toBe('spread');
    expect(config.quotaTimeZone).toBe('Asia/Shanghai');
    expect(config.simulatedNodes).toBe(4);
    expect(loadConfig({}, os.tmpdir())).toMatchObject({ schedulerPreemption: false, schedulerStrategy: 'binpack', quotaTimeZone: 'UTC', stopGrace: 10 });
    let problems: string[] = [];
    try {
      loadConfig({ AIPLAT_SCHEDULER_PREEMPTION: 'yes', AIPLAT_SCHEDULER_STRATEGY: 'random', AIPLAT_QUOTA_TIMEZONE: 'Mars/Olympus' }, os.tmpdir());
    } catch (error) {
      problems = (error as ConfigError).problems;
    }
    expect(problems).toEqual([
      'AIPLAT_SCHEDULER_STRATEGY is "random": expected binpack or spread',
      'AIPLAT_SCHEDULER_PREEMPTION is "yes": expected true or false',
      'AIPLAT_QUOTA_TIMEZONE is "Mars/Olympus": expected an IANA time zone name such as UTC or Asia/Shanghai',
    ]);
  });
});
