/**
 * The `registry` service of docker-compose.yml is a configuration the registry accepts: its
 * environment (every variable at its default) passes loadRegistryConfig, the port it listens on
 * is published and probed by the healthcheck, its data folder is a named volume, and its command
 * is the root package.json's `registry` script. (test/docker-compose.test.ts checks the file as a whole.)
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadRegistryConfig } from '../src/config.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const compose = YAML.parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as Record<string, any>;
const rootScripts = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;

/** `${VAR:-default}` → default (the file's defaults, as Compose resolves them with nothing set). */
const withDefaults = (value: unknown) => String(value).replace(/\$\{[A-Z0-9_]+:-([^}]*)\}/g, '$1');

describe('docker-compose.yml: the registry service', () => {
  const service = compose.services?.registry as Record<string, any> | undefined;

  it('exists, built from this repository like the core, restarting unless stopped', () => {
    expect(service).toBeDefined();
    expect(service!.build).toEqual(compose.services.core.build);
    expect(service!.restart).toBe('unless-stopped');
    expect(service!.command).toEqual(['npm', 'run', 'registry']);
    expect(rootScripts.registry).toBe('node --import tsx registry/src/main.ts');
  });

  it('has an environment the registry accepts, a published port, a data volume and a health probe', () => {
    const env = Object.fromEntries(Object.entries(service!.environment as Record<string, unknown>).map(([k, v]) => [k, withDefaults(v)]));
    for (const name of Object.keys(env)) expect(['REGISTRY_PORT', 'REGISTRY_HOST', 'REGISTRY_DATA_DIR', 'REGISTRY_PUBLISHERS', 'REGISTRY_MAX_UPLOAD', 'REGISTRY_PUBLIC_URL', 'LOG_LEVEL']).toContain(name);
    const config = loadRegistryConfig(env, '/');
    expect(config.host).toBe('0.0.0.0');
    expect(config.dataDir).toBe(env.REGISTRY_DATA_DIR);
    expect(config.publicUrl).toBeUndefined();
    expect(config.maxUploadBytes).toBe(512 * 1024 ** 2);
    const targets = (service!.ports as string[]).map((p) => Number(withDefaults(p).split(':').pop()));
    expect(targets).toContain(config.port);
    expect((service!.ports as string[]).map(withDefaults)).toContain('8090:8090');
    const volumes = (service!.volumes as string[]).map((v) => v.split(':'));
    const mount = volumes.find(([, target]) => target === config.dataDir);
    expect(mount, 'a named volume at REGISTRY_DATA_DIR').toBeDefined();
    expect(compose.volumes).toHaveProperty(mount![0]!);
    expect(mount![0]).not.toBe('aiplat-data');
    expect((service!.healthcheck.test as string[]).join(' ')).toContain(`127.0.0.1:${config.port}/api/v1/health`);
  });
});
