/**
 * `npm run secrets:rotate`: re-encrypt every stored secret with a new master key.
 *
 *   AIPLAT_SECRET_KEY=<current key> AIPLAT_NEW_SECRET_KEY=<new key> npm run secrets:rotate
 *
 * It reads AIPLAT_DATA_DIR / DATABASE_URL (and AIPLAT_CONFIG_FILE) like the core, takes the data
 * folder's lock (so it refuses while a core runs on that folder) and changes everything in one
 * transaction. Afterwards start the core with AIPLAT_SECRET_KEY set to the new key.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '@aiplat/plugin-sdk';
import { ConfigError, loadConfig } from '../config/config.js';
import { DataDirInUseError, lockDataDir } from '../db/lock.js';
import { openDatabase } from '../db/database.js';
import { SecretKeyError } from './keys.js';
import { rotateSecrets } from './rotation.js';

const MIN_KEY_LENGTH = 32;

const quiet: Logger = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => quiet,
};

class UsageError extends Error {}

async function main(): Promise<number> {
  const config = loadConfig();
  const next = process.env.AIPLAT_NEW_SECRET_KEY;
  if (!next || next.length < MIN_KEY_LENGTH) {
    throw new UsageError(`set AIPLAT_NEW_SECRET_KEY to the new key, at least ${MIN_KEY_LENGTH} characters (e.g. \`openssl rand -base64 48\`), and AIPLAT_SECRET_KEY to the current one`);
  }
  if (!config.databaseUrl && !existsSync(path.join(config.dataDir, 'pgdata', 'PG_VERSION'))) {
    throw new UsageError(`there is no aiplat database in ${config.dataDir}: set AIPLAT_DATA_DIR to the core's data folder (or DATABASE_URL to its PostgreSQL server)`);
  }
  const lock = lockDataDir(config.dataDir);
  try {
    const database = await openDatabase({ dataDir: config.dataDir, databaseUrl: config.databaseUrl, logger: quiet });
    try {
      if (!(await database.knex.schema.hasTable('plugin_states'))) {
        throw new UsageError(`the database of ${config.databaseUrl ? 'DATABASE_URL' : config.dataDir} has no aiplat tables yet: start the core once first`);
      }
      const result = await rotateSecrets(database.knex, { current: config.secretKey, next });
      const where = result.plugins.length > 0 ? ` (plugin settings of ${result.plugins.join(', ')})` : '';
      process.stdout.write(
        `aiplat: re-encrypted ${result.secrets} secret${result.secrets === 1 ? '' : 's'}${where} with the new key: ` +
          `key id ${result.fromKeyId ?? '(none)'} → ${result.toKeyId}.\n` +
          'Start aiplat with AIPLAT_SECRET_KEY set to the new key. Access tokens signed with the old key stop working; clients get new ones with their refresh token.\n',
      );
      return 0;
    } finally {
      await database.close();
    }
  } finally {
    lock.release();
  }
}

main().then(
  (code) => (process.exitCode = code),
  (error: unknown) => {
    if (error instanceof ConfigError || error instanceof UsageError) {
      process.stderr.write(`aiplat secrets:rotate: ${error.message}\n`);
      process.exitCode = 2;
    } else if (error instanceof DataDirInUseError) {
      process.stderr.write(`aiplat secrets:rotate: refusing to rotate while the core runs: ${error.message}\n`);
      process.exitCode = 3;
    } else if (error instanceof SecretKeyError) {
      process.stderr.write(`aiplat secrets:rotate: ${error.message} Nothing was changed.\n`);
      process.exitCode = 4;
    } else {
      process.stderr.write(`aiplat secrets:rotate: failed, nothing was changed: ${(error as Error).stack ?? String(error)}\n`);
      process.exitCode = 1;
    }
  },
);
