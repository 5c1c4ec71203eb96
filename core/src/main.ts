import './http/tick-shape.js'; // first, before the start-up's full collections (the module says why)
import { ConfigError, loadConfig } from './config/config.js';
import { DataDirInUseError } from './db/lock.js';
import { startCore } from './core.js';
import { SecretKeyError } from './secrets/keys.js';

/** `npm start`: read the configuration, start the core, stop cleanly on SIGTERM / SIGINT. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`aiplat: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  let core;
  try {
    core = await startCore(config);
  } catch (error) {
    if (error instanceof DataDirInUseError) {
      process.stderr.write(`aiplat: ${error.message}\n`);
      process.exit(3);
    }
    if (error instanceof SecretKeyError) {
      process.stderr.write(`aiplat: cannot start: ${error.message}\n`);
      process.exit(4);
    }
    process.stderr.write(`aiplat: cannot start: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  }
  const shutdown = (signal: string) => {
    core.logger.info({ signal }, 'signal received');
    core.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`aiplat: shutdown failed: ${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

void main();
