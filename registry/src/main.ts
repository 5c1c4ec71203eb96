/**
 * `npm run registry` starts the plugin registry; with a command it manages publishers:
 *
 *   npm run registry                                   start (configured by REGISTRY_* variables)
 *   npm run registry -- add-publisher <name> [--key <key file>]
 *   npm run registry -- add-key <name> <key file>
 *   npm run registry -- rotate-token <name>
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import type { Logger } from '@aiplat/plugin-sdk';
import { parsePublicKey, type PublicKey } from '@aiplat/plugin-sdk/package';
import { loadRegistryConfig, RegistryConfigError } from './config.js';
import { addKey, addPublisher, rotateToken } from './publishers.js';
import { startRegistry } from './server.js';

const USAGE = `Usage:
  npm run registry                                         start the registry
  npm run registry -- add-publisher <name> [--key <file>]  add a publisher; prints its token (shown once)
  npm run registry -- add-key <name> <file>                trust another signing key of a publisher
  npm run registry -- rotate-token <name>                  give a publisher a new token (the old one stops working)

<file> is a public key or key pair file from \`aiplat-plugin keygen\`; only the public key is kept.
Environment: REGISTRY_PORT (8090), REGISTRY_HOST (0.0.0.0), REGISTRY_DATA_DIR (./.aiplat-registry),
REGISTRY_PUBLISHERS (<data dir>/publishers.json), REGISTRY_MAX_UPLOAD (512MiB), REGISTRY_PUBLIC_URL, LOG_LEVEL (info).`;

async function readKey(file: string): Promise<PublicKey> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new Error(`the key file ${file} cannot be read as JSON: ${(error as Error).message}`, { cause: error });
  }
  return parsePublicKey(raw, file);
}

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const SDK_WORKSPACES = ['plugin-sdk', 'plugin-sdk/testing', 'core', 'plugin-sdk/cli'];

/**
 * Run from a checkout, the registry serves this checkout's @aiplat packages on /npm/ without a
 * separate step: they are packed into the data folder when a version there is missing.
 */
function ensureSdkPacked(dataDir: string, logger: Logger): void {
  const wanted = SDK_WORKSPACES.map((ws) => path.join(ROOT, ws, 'package.json'))
    .filter((file) => existsSync(file))
    .map((file) => JSON.parse(readFileSync(file, 'utf8')) as { name: string; version: string });
  if (wanted.length === 0) return;
  const indexFile = path.join(dataDir, 'npm', 'packages.json');
  let packed: Record<string, Record<string, unknown>> = {};
  try {
    packed = (JSON.parse(readFileSync(indexFile, 'utf8')) as { packages: typeof packed }).packages ?? {};
  } catch {
    // not packed yet
  }
  const missing = wanted.filter((p) => !packed[p.name]?.[p.version]);
  if (missing.length === 0) return;
  logger.info({ packages: missing.map((p) => `${p.name}@${p.version}`) }, 'packing the @aiplat npm packages for /npm/');
  const result = spawnSync(process.execPath, [path.join(ROOT, 'registry', 'scripts', 'pack-sdk.mjs'), '--data-dir', dataDir], { encoding: 'utf8' });
  if (result.status !== 0) logger.warn({ output: `${result.stdout}${result.stderr}`.slice(-2000) }, 'cannot pack the @aiplat npm packages: /npm/ serves what was packed before');
}

async function start(): Promise<void> {
  const config = loadRegistryConfig();
  const logger = pino({ level: config.logLevel, base: { service: 'aiplat-registry' } }) as unknown as Logger;
  ensureSdkPacked(config.dataDir, logger);
  const registry = await startRegistry({
    dataDir: config.dataDir,
    port: config.port,
    host: config.host,
    publishers: config.publishersFile,
    logger,
    maxUploadBytes: config.maxUploadBytes,
    ...(config.publicUrl ? { publicUrl: config.publicUrl } : {}),
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'registry stopping');
    registry.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  if (command === undefined || command === 'start') return start();
  if (command === 'help' || command === '--help' || command === '-h') {
    console.log(USAGE);
    return;
  }
  const { publishersFile } = loadRegistryConfig();
  switch (command) {
    case 'add-publisher': {
      const [name, flag, keyFile, ...extra] = args;
      if (!name || (flag !== undefined && (flag !== '--key' || !keyFile)) || extra.length > 0) throw new Error(`add-publisher takes a name and optionally --key <file>\n\n${USAGE}`);
      const keys = keyFile ? [await readKey(keyFile)] : [];
      const token = await addPublisher(publishersFile, name, keys);
      console.error(`Added publisher "${name}" to ${publishersFile}${keys.length ? ` with key ${keys[0]!.keyId}` : ''}.`);
      console.error('Its token, shown only now (the file keeps only its SHA-256):');
      console.log(token);
      return;
    }
    case 'add-key': {
      const [name, keyFile, ...extra] = args;
      if (!name || !keyFile || extra.length > 0) throw new Error(`add-key takes a publisher name and a key file\n\n${USAGE}`);
      const key = await readKey(keyFile);
      await addKey(publishersFile, name, key);
      console.error(`Publisher "${name}" now signs with key ${key.keyId} too (${publishersFile}).`);
      return;
    }
    case 'rotate-token': {
      const [name, ...extra] = args;
      if (!name || extra.length > 0) throw new Error(`rotate-token takes a publisher name\n\n${USAGE}`);
      const token = await rotateToken(publishersFile, name);
      console.error(`New token for "${name}" (the old one no longer works), shown only now:`);
      console.log(token);
      return;
    }
    default:
      throw new Error(`unknown command "${command}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof RegistryConfigError) console.error(error.message);
  else console.error(`registry: ${(error as Error).message ?? String(error)}`);
  process.exit(1);
});
