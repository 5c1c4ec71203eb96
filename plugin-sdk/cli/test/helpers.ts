/**
 * Helpers of the CLI's tests: run the real `aiplat-plugin` command in a child process, and make
 * scratch folders outside the repository whose plugins resolve packages from its node_modules.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const CLI_DIR = path.resolve(import.meta.dirname, '..');
export const REPO = path.resolve(CLI_DIR, '..', '..');
export const BIN = path.join(CLI_DIR, 'bin', 'aiplat-plugin.mjs');

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of a child: without vitest's variables, as a person's shell would have it. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key === 'VITEST' || key.startsWith('VITEST_') || key === 'NODE_ENV' || key === 'TEST' || (key.startsWith('AIPLAT_') && !key.startsWith('AIPLAT_TEST_'))) continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

/** Run `aiplat-plugin <args>`. */
export function runCli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return run(process.execPath, [BIN, ...args], options);
}

/** Run a command; resolves with its exit code and output (never rejects on a non-zero exit). */
export function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd ?? REPO, env: cleanEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 180_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * A scratch folder outside the repository with `node_modules` linked to the repository's, so a
 * plugin copied into it resolves @aiplat/plugin-sdk, vite and its own dependencies as in place.
 */
export function scratch(prefix = 'aiplat-cli-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  symlinkSync(path.join(REPO, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Copy a plugin folder of the repository into `parent`, without its builds, tests and node_modules. */
export function copyPlugin(source: string, parent: string, name = path.basename(source)): string {
  const dest = path.join(parent, name);
  mkdirSync(parent, { recursive: true });
  cpSync(source, dest, {
    recursive: true,
    filter: (src) => {
      const rel = path.relative(source, src).split(path.sep);
      return !rel.includes('node_modules') && !(rel[0] === 'dist') && !(rel[0] === 'test') && !(rel[0] === 'web' && rel[1] === 'dist') && !rel.includes('.aiplat-dev');
    },
  });
  // The plugin's own dependencies, where npm put versions that differ from the hoisted ones (an
  // author's folder has its node_modules too): linked, not copied.
  if (existsSync(path.join(source, 'node_modules'))) symlinkSync(path.join(source, 'node_modules'), path.join(dest, 'node_modules'), 'dir');
  return dest;
}

export const TEST_PASSWORD = 'cli-test-admin-password';

/**
 * A core in a process of its own, as `aiplat-plugin dev` starts it (src/dev-core.ts), loading
 * exactly `pluginDirs`.
 */
export function startDevCore(options: { pluginDirs: string[]; dataDir: string }): Promise<{ url: string; password: string; stop(): Promise<void> }> {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  const child = spawn(process.execPath, ['--import', tsx, path.join(CLI_DIR, 'src', 'dev-core.ts')], {
    cwd: options.dataDir.replace(/[^/]+$/, ''),
    env: cleanEnv({ AIPLAT_PLUGIN_DIRS: options.pluginDirs.join(path.delimiter), AIPLAT_DATA_DIR: options.dataDir, PORT: '0', HOST: '127.0.0.1', AIPLAT_ADMIN_PASSWORD: TEST_PASSWORD, LOG_LEVEL: 'warn' }),
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the core did not start in 120 s:\n${output}`));
    }, 120_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the core exited (${code}):\n${output}`));
    });
    child.on('message', (message: { type: string; url?: string; message?: string }) => {
      clearTimeout(timer);
      if (message.type !== 'ready' || !message.url) {
        reject(new Error(`the core did not start: ${message.message}\n${output}`));
        return;
      }
      resolve({
        url: message.url,
        password: TEST_PASSWORD,
        async stop() {
          child.kill('SIGTERM');
          await exited;
        },
      });
    });
  });
}

const WORKSPACES: Record<string, string> = {
  '@aiplat/plugin-sdk': path.join(REPO, 'plugin-sdk'),
  '@aiplat/testing': path.join(REPO, 'plugin-sdk', 'testing'),
  '@aiplat/cli': CLI_DIR,
};

/** What `npm install` would give the scaffold, as links into this repository. */
export function linkDependencies(dir: string): string[] {
  const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
  const names = [...Object.keys(pkg.dependencies), ...Object.keys(pkg.devDependencies)];
  for (const name of names) {
    const target = WORKSPACES[name] ?? path.join(REPO, 'node_modules', name);
    if (!existsSync(target)) throw new Error(`the scaffold depends on ${name}, which this repository does not have`);
    const link = path.join(dir, 'node_modules', name);
    mkdirSync(path.dirname(link), { recursive: true });
    symlinkSync(target, link, 'dir');
  }
  return names;
}
