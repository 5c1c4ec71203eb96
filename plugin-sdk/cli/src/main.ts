/**
 * The `aiplat-plugin` command line: one sub-command per step of a plugin's life.
 * Exit codes: 0 done, 1 the command failed, 2 the command line was wrong.
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { PackageError } from '@aiplat/plugin-sdk/package';
import { buildPlugin } from './build.js';
import { cliPackage, createPlugin } from './create.js';
import { dev } from './dev.js';
import { DEFAULT_KEY_FILE, KEY_ENV, keygen } from './keys.js';
import { packPlugin } from './pack.js';
import { publish, REGISTRY_ENV, TOKEN_ENV } from './publish.js';
import { CliError, EXIT_FAILED, EXIT_USAGE } from './util.js';
import { signPackage, verifyPackageFile } from './verify.js';

function portNumber(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new InvalidArgumentError('expected a TCP port number between 0 and 65535');
  return port;
}

/** Wait for SIGINT or SIGTERM. */
function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
}

export function program(): Command {
  const cmd = new Command('aiplat-plugin')
    .description('Create, build, pack, sign, verify, publish and develop aiplat plugins.')
    .version(cliPackage().version, '-v, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });

  cmd
    .command('create')
    .description('scaffold a new plugin that builds and passes its tests on first run')
    .argument('<name>', 'the plugin id (3–40 lowercase letters, digits or "-")')
    .option('--dir <dir>', 'the folder to create (default: ./<name>)')
    .option('--registry <url>', 'a registry: .npmrc takes the @aiplat packages from <url>/npm/, npm run publish goes there')
    .action((name: string, opts: { dir?: string; registry?: string }) => {
      createPlugin(name, opts);
    });

  cmd
    .command('build')
    .description('bundle the backend into dist/backend/index.js (esbuild) and build the UI remote (vite)')
    .argument('[dir]', 'the plugin folder', '.')
    .option('--no-ui', 'skip the UI build')
    .action(async (dir: string, opts: { ui: boolean }) => {
      await buildPlugin(dir, { ui: opts.ui });
    });

  cmd
    .command('pack')
    .description('build, then pack exactly the package files into <id>-<version>.tgz with a SIGNATURE')
    .argument('[dir]', 'the plugin folder', '.')
    .option('-o, --out <file>', 'the package file, or a folder for <id>-<version>.tgz (default: the working directory)')
    .option('-k, --key <key.json>', `sign with this key pair file (default: $${KEY_ENV}, else unsigned)`)
    .option('--no-build', 'pack what was built before')
    .action(async (dir: string, opts: { out?: string; key?: string; build: boolean }) => {
      await packPlugin(dir, opts);
    });

  cmd
    .command('keygen')
    .description('make an ed25519 signing key pair; prints its public key')
    .requiredOption('-p, --publisher <name>', 'who signs (letters, digits, ".", "_", "-")')
    .option('-o, --out <key.json>', 'where to write the key pair (mode 0600)', DEFAULT_KEY_FILE)
    .option('-f, --force', 'replace an existing key file')
    .action((opts: { publisher: string; out: string; force?: boolean }) => {
      keygen(opts);
    });

  cmd
    .command('sign')
    .description('sign a package (replaces its SIGNATURE)')
    .argument('<file.tgz>', 'the package')
    .requiredOption('-k, --key <key.json>', 'the key pair file')
    .option('-o, --out <file>', 'write the signed package here (default: replace the file)')
    .action(async (file: string, opts: { key: string; out?: string }) => {
      await signPackage(file, opts);
    });

  cmd
    .command('verify')
    .description('check a package against its SIGNATURE: signed, untrusted, unsigned or modified (exit 1 unless signed)')
    .argument('<file.tgz>', 'the package')
    .option('-t, --trusted <keys.json>', 'trusted public keys: one key, an array, or { "keys": [...] }')
    .option('--allow-unsigned', 'exit 0 for unsigned and untrusted packages too (never for modified ones)')
    .action(async (file: string, opts: { trusted?: string; allowUnsigned?: boolean }) => {
      const verdict = await verifyPackageFile(file, opts);
      if (!verdict.ok) throw new CliError('', EXIT_FAILED);
    });

  cmd
    .command('publish')
    .description('upload a package (or pack a plugin folder and upload it) to a registry')
    .argument('<source>', 'a .tgz, or a plugin folder to pack first')
    .option('-r, --registry <url>', `the registry (default: $${REGISTRY_ENV})`)
    .option('--token <token>', `the publisher token (default: $${TOKEN_ENV})`)
    .option('-k, --key <key.json>', `when packing a folder: sign with this key pair file (default: $${KEY_ENV})`)
    .option('--no-build', 'when packing a folder: pack what was built before')
    .action(async (source: string, opts: { registry?: string; token?: string; key?: string; build: boolean }) => {
      await publish(source, opts);
    });

  cmd
    .command('dev')
    .description('run a local core with the plugin; restart it when src/ changes, rebuild the UI when web/ changes')
    .argument('[dir]', 'the plugin folder', '.')
    .option('--port <port>', 'the port (0: any free one)', portNumber, 8080)
    .option('--no-ui', 'do not build the UI')
    .action(async (dir: string, opts: { port: number; ui: boolean }) => {
      const handle = await dev(dir, opts);
      await Promise.race([untilSignal(), handle.done]);
      await handle.stop();
    });

  return cmd;
}

/** Run the command line; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; commander has printed the usage error.
      return error.exitCode === 0 || error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : EXIT_USAGE;
    }
    if (error instanceof CliError) {
      if (error.message) process.stderr.write(`aiplat-plugin: ${error.message}\n`);
      return error.exitCode;
    }
    if (error instanceof PackageError) {
      process.stderr.write(`aiplat-plugin: ${error.message}\n`);
      return EXIT_FAILED;
    }
    process.stderr.write(`aiplat-plugin: ${(error as Error).stack ?? String(error)}\n`);
    return EXIT_FAILED;
  }
}
