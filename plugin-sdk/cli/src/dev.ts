/**
 * `aiplat-plugin dev [dir]`: a local core with the plugin (a child process, restarted when the
 * plugin's src/ or manifest changes) and, when the plugin has a UI, `vite build --watch` of it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, watch, type FSWatcher } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { MANIFEST_FILE } from '@aiplat/plugin-sdk';
import { productionEnv, uiTarget } from './build.js';
import type { DevCoreMessage } from './dev-core.js';
import { readPluginFolder } from './manifest.js';
import { CliError, consoleOutput, type Output } from './util.js';

const require = createRequire(import.meta.url);

/** The data folder of the dev core, inside the plugin folder. */
export const DEV_DATA_DIR = '.aiplat-dev';
/** The admin password of a dev core when AIPLAT_ADMIN_PASSWORD is not set (it listens on 127.0.0.1 only by default). */
export const DEV_ADMIN_PASSWORD = 'aiplat-dev-admin';
const RESTART_DEBOUNCE_MS = 300;
const STOP_TIMEOUT_MS = 15_000;

export interface DevOptions {
  port?: number;
  /** Build the UI in watch mode when the plugin has one (default true). */
  ui?: boolean;
  output?: Output;
}

export interface DevHandle {
  /** Resolves with the core's URL each time it is (re)started. */
  readonly url: string | undefined;
  stop(): Promise<void>;
  /** Resolves when stopped. */
  done: Promise<void>;
}

/** `aiplat-plugin dev`. */
export async function dev(dir = '.', options: DevOptions = {}): Promise<DevHandle> {
  const output = options.output ?? consoleOutput;
  const folder = readPluginFolder(dir);
  const port = options.port ?? 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CliError(`--port ${port}: expected a TCP port number between 0 and 65535`, 2);
  const dataDir = path.join(folder.dir, DEV_DATA_DIR);
  mkdirSync(dataDir, { recursive: true });
  const pluginDirs = [...(process.env.AIPLAT_PLUGIN_DIRS ?? '').split(path.delimiter).filter(Boolean), folder.dir];
  const passwordFromEnv = Boolean(process.env.AIPLAT_ADMIN_PASSWORD);
  // The child's environment, taken before the UI build switches this process to production.
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    AIPLAT_DATA_DIR: dataDir,
    AIPLAT_PLUGIN_DIRS: pluginDirs.join(path.delimiter),
    PORT: String(port),
    HOST: process.env.HOST ?? '127.0.0.1',
    AIPLAT_ADMIN_PASSWORD: process.env.AIPLAT_ADMIN_PASSWORD ?? DEV_ADMIN_PASSWORD,
    AIPLAT_DEV_PLUGIN: folder.manifest.id,
  };
  const tsx = pathToFileURL(require.resolve('tsx')).href;
  const entry = path.join(import.meta.dirname, 'dev-core.ts');

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let url: string | undefined;
  let stopped = false;
  let first = true;
  let restarting = false;
  let again = false;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const start = () => {
    const proc = spawn(process.execPath, ['--import', tsx, entry], { cwd: folder.dir, env: childEnv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child = proc;
    exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    proc.on('message', (message: DevCoreMessage) => {
      if (message.type === 'failed') output.warn(`the core did not start: ${message.message ?? 'see above'}`);
      if (message.type === 'ready' && message.url) {
        url = message.url;
        output.out(`aiplat-plugin dev: ${folder.manifest.id} is running in a core at ${message.url}`);
        if (message.plugin && message.plugin.state !== 'enabled') {
          output.warn(`${folder.manifest.id} is not enabled (${message.plugin.state})${message.plugin.reason ? `: ${message.plugin.reason}` : ''}`);
        }
        if (first) {
          first = false;
          output.info(`  sign in as admin, password ${passwordFromEnv ? 'from AIPLAT_ADMIN_PASSWORD' : `"${DEV_ADMIN_PASSWORD}" (the dev default; set AIPLAT_ADMIN_PASSWORD before the first start to choose another)`}`);
          output.info(`  data: ${dataDir} (delete it to start afresh; the admin password is kept there)`);
          output.info(`  watching ${['src/', MANIFEST_FILE].join(' and ')}: a change restarts the core`);
          if (!message.shellBuilt) {
            output.warn(`there is no web shell build in ${message.webDir}: the API answers, the pages do not (set AIPLAT_WEB_DIR to a web-shell build; in the aiplat repository, npm run build:ui makes one)`);
          }
        }
      }
    });
    proc.once('exit', (code, signal) => {
      if (child === proc) child = undefined;
      if (!stopped && !restarting) output.warn(`the core exited (${signal ?? `code ${code}`}): change a file to start it again`);
    });
  };

  const stopChild = async () => {
    const proc = child;
    if (!proc) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };

  const restart = async () => {
    if (restarting) {
      again = true;
      return;
    }
    restarting = true;
    try {
      do {
        again = false;
        output.info('aiplat-plugin dev: a change: restarting the core');
        await stopChild();
        if (stopped) return;
        start();
      } while (again);
    } finally {
      restarting = false;
    }
  };
  const changed = (file: string | null) => {
    if (file && (file.includes('node_modules') || file.startsWith('.'))) return;
    clearTimeout(timer);
    timer = setTimeout(() => void restart(), RESTART_DEBOUNCE_MS);
  };

  const watchers: FSWatcher[] = [];
  const srcDir = path.join(folder.dir, 'src');
  if (existsSync(srcDir)) watchers.push(watch(srcDir, { recursive: true }, (_event, file) => changed(file ? String(file) : null)));
  watchers.push(watch(folder.manifestFile, () => changed(MANIFEST_FILE)));

  start();

  // The UI: a Vite build in watch mode (the core serves web/dist as it changes).
  let uiWatcher: { close(): Promise<void> | void } | undefined;
  const target = options.ui === false ? undefined : uiTarget(folder);
  if (target?.configFile) {
    productionEnv();
    try {
      const { build } = await import('vite');
      const result = await build({ root: target.webDir, configFile: target.configFile, configLoader: 'runner', logLevel: 'warn', mode: 'production', build: { watch: {} } });
      if (result && typeof (result as { close?: unknown }).close === 'function') uiWatcher = result as { close(): Promise<void> };
      output.info(`  building the UI into ${path.relative(folder.dir, target.outDir)}/ on every change of web/`);
    } catch (error) {
      output.warn(`the UI watch build did not start: ${(error as Error).message}`);
    }
  }

  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  const handle: DevHandle = {
    get url() {
      return url;
    },
    async stop() {
      if (stopped) return done;
      stopped = true;
      clearTimeout(timer);
      for (const w of watchers) w.close();
      await uiWatcher?.close();
      await stopChild();
      resolveDone();
      return done;
    },
    done,
  };
  return handle;
}
