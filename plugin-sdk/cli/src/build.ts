/**
 * `aiplat-plugin build`: the backend bundled with esbuild into `dist/backend/index.js`, the UI
 * remote built with Vite where the manifest's `web.remoteEntry` says.
 */
import { existsSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Message, Metafile, Plugin as EsbuildPlugin } from 'esbuild';
import { HOST_LIBRARIES } from '@aiplat/plugin-sdk/package';
import { readPluginFolder, type PluginFolder } from './manifest.js';
import { CliError, consoleOutput, folderSize, formatSize, type Output } from './util.js';

/** Where the backend bundle lands, relative to the plugin folder (and inside a package). */
export const BACKEND_OUT = 'dist/backend/index.js';
/** The Vite config of a plugin's UI remote, relative to the plugin folder. */
export const WEB_CONFIG = 'web/vite.config.ts';

/**
 * Gives the bundle's CommonJS dependencies what Node gives CommonJS modules (esbuild renames any
 * top-level binding of the plugin's own code that has one of these names).
 */
const CJS_BANNER = [
  "import { createRequire as __aiplatCreateRequire } from 'node:module';",
  "import { fileURLToPath as __aiplatFileURLToPath } from 'node:url';",
  "import { dirname as __aiplatDirname } from 'node:path';",
  'const require = __aiplatCreateRequire(import.meta.url);',
  'const __filename = __aiplatFileURLToPath(import.meta.url);',
  'const __dirname = __aiplatDirname(__filename);',
].join('\n');

export interface BackendBuild {
  outFile: string;
  size: number;
  mapSize: number;
  /** Modules bundled in. */
  modules: number;
  /** Native addons left out of the bundle (their `require` must be optional at run time). */
  nativeLeftOut: { path: string; importer: string }[];
}

export interface UiBuild {
  outDir: string;
  files: number;
  size: number;
}

export interface BuildResult {
  folder: PluginFolder;
  backend?: BackendBuild;
  ui?: UiBuild;
}

export interface BuildOptions {
  output?: Output;
  /** Build only the backend, not the UI (default: both). */
  ui?: boolean;
}

/** The folder of the installed SDK as seen from the plugin folder (symlinks resolved). */
function sdkRoot(pluginDir: string): string | undefined {
  try {
    const entry = createRequire(path.join(pluginDir, 'package.json')).resolve('@aiplat/plugin-sdk');
    return path.resolve(path.dirname(entry), '..');
  } catch {
    return undefined;
  }
}

/** The package a bundled input belongs to (`vue`, `@scope/name`), or undefined for the plugin's own files. */
function packageOf(input: string): string | undefined {
  const parts = input.split(/[\\/]/);
  const at = parts.lastIndexOf('node_modules');
  if (at < 0) return undefined;
  const first = parts[at + 1];
  if (!first) return undefined;
  return first.startsWith('@') ? `${first}/${parts[at + 2] ?? ''}` : first;
}

/** Keeps the host's modules out and native addons external, and says so. */
function guards(nativeLeftOut: BackendBuild['nativeLeftOut']): EsbuildPlugin {
  return {
    name: 'aiplat-guards',
    setup(build) {
      build.onResolve({ filter: /^@aiplat\/(core|testing|cli)(\/|$)/ }, (args) => ({
        errors: [
          {
            text: `${args.path} cannot be imported by a plugin's backend: the core provides only @aiplat/plugin-sdk to plugins (${args.importer})`,
          },
        ],
      }));
      // A compiled addon cannot be bundled and is built for one platform: it stays out. The
      // dependency must load without it (ssh2 does: its addons are optional speed-ups, required
      // inside try/catch).
      build.onResolve({ filter: /\.node$/ }, (args) => {
        const parts = args.importer.split(/[\\/]/);
        const at = parts.lastIndexOf('node_modules');
        nativeLeftOut.push({ path: args.path, importer: at >= 0 ? parts.slice(at + 1).join('/') : args.importer });
        return { path: args.path, external: true };
      });
    },
  };
}

function formatMessages(messages: Message[]): string {
  return messages
    .map((m) => {
      const where = m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ` : '';
      return `${where}${m.text}`;
    })
    .join('\n  ');
}

/** Bundle the backend entry of a plugin folder into `dist/backend/index.js`. */
export async function buildBackend(folder: PluginFolder, output: Output = consoleOutput): Promise<BackendBuild | undefined> {
  const { dir, manifest } = folder;
  if (!manifest.backend) return undefined;
  const entryRel = manifest.backend.entry;
  const entry = path.resolve(dir, entryRel);
  if (path.relative(dir, entry).split(path.sep).join('/') === BACKEND_OUT) {
    throw new CliError(`aiplat-plugin.json: backend.entry is "${entryRel}", the build's output: it must name the source module (e.g. "src/index.ts")`);
  }
  if (!existsSync(entry)) throw new CliError(`aiplat-plugin.json: backend.entry "${entryRel}" does not exist`);
  const outFile = path.join(dir, BACKEND_OUT);
  rmSync(path.dirname(outFile), { recursive: true, force: true });
  const esbuild = await import('esbuild');
  const nativeLeftOut: BackendBuild['nativeLeftOut'] = [];
  let result;
  try {
    result = await esbuild.build({
      absWorkingDir: dir,
      entryPoints: [entry],
      outfile: outFile,
      bundle: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      sourcemap: 'linked',
      metafile: true,
      logLevel: 'silent',
      // The host provides the SDK (one copy, so hooks, services and definePlugin stay the host's).
      external: ['@aiplat/plugin-sdk', '@aiplat/plugin-sdk/*'],
      banner: { js: CJS_BANNER },
      plugins: [guards(nativeLeftOut)],
    });
  } catch (error) {
    const failure = error as { errors?: Message[]; message: string };
    throw new CliError(`the backend build of ${manifest.id} failed:\n  ${failure.errors ? formatMessages(failure.errors) : failure.message}`);
  }
  if (result.warnings.length > 0) output.warn(`the backend build of ${manifest.id}:\n  ${formatMessages(result.warnings)}`);
  checkInputs(result.metafile, dir);
  for (const native of nativeLeftOut) {
    output.warn(`native addon ${native.path} (required by ${native.importer}) is left out of the bundle: ${manifest.id} must work without it`);
  }
  return {
    outFile,
    size: statSync(outFile).size,
    mapSize: existsSync(`${outFile}.map`) ? statSync(`${outFile}.map`).size : 0,
    modules: Object.keys(result.metafile.inputs).length,
    nativeLeftOut,
  };
}

/** Refuse a bundle that took in the SDK's or the shell's libraries (they must stay the host's). */
function checkInputs(metafile: Metafile, dir: string): void {
  const sdk = sdkRoot(dir);
  for (const input of Object.keys(metafile.inputs)) {
    const full = path.resolve(dir, input.replace(/^[a-z-]+:/, ''));
    const pkg = packageOf(input);
    const host = HOST_LIBRARIES.find((lib) => lib === pkg);
    if (host || (sdk && full.startsWith(sdk + path.sep) && !full.slice(sdk.length).includes(`${path.sep}node_modules${path.sep}`))) {
      throw new CliError(`the backend bundle would carry its own copy of ${host ?? '@aiplat/plugin-sdk'} (${input}), which the host provides: import it as "${host ?? '@aiplat/plugin-sdk'}"`);
    }
  }
}

/** Make Vite build for production even when started from a test runner (see scripts/build-ui.mjs). */
export function productionEnv(): void {
  // Under VITEST or NODE_ENV=test, @module-federation/vite emits no remoteEntry.js (seen with 1.23.8).
  for (const key of Object.keys(process.env)) if (key === 'VITEST' || key.startsWith('VITEST_')) delete process.env[key];
  process.env.NODE_ENV = 'production';
}

/** The UI remote's build folder and the remote entry, or undefined when the plugin has no UI. */
export function uiTarget(folder: PluginFolder): { webDir: string; configFile: string; remoteEntry: string; outDir: string } | undefined {
  const { dir, manifest } = folder;
  const configFile = path.join(dir, WEB_CONFIG);
  const hasConfig = existsSync(configFile);
  if (!manifest.web) {
    if (hasConfig) throw new CliError(`${WEB_CONFIG} exists but aiplat-plugin.json has no "web" section: add { "remoteEntry": "web/dist/remoteEntry.js", "contributions": [...] }`);
    return undefined;
  }
  const remoteEntry = path.resolve(dir, manifest.web.remoteEntry);
  return { webDir: path.dirname(configFile), configFile: hasConfig ? configFile : '', remoteEntry, outDir: path.dirname(remoteEntry) };
}

/** Build the UI remote with the plugin's own `web/vite.config.ts`. */
export async function buildUi(folder: PluginFolder): Promise<UiBuild | undefined> {
  const target = uiTarget(folder);
  if (!target) return undefined;
  if (!target.configFile) {
    if (existsSync(target.remoteEntry)) return { outDir: target.outDir, ...sizeOf(target.outDir) };
    throw new CliError(`aiplat-plugin.json: web.remoteEntry "${folder.manifest.web!.remoteEntry}" does not exist and there is no ${WEB_CONFIG} to build it`);
  }
  productionEnv();
  const { build } = await import('vite');
  try {
    await build({ root: target.webDir, configFile: target.configFile, configLoader: 'runner', logLevel: 'warn', mode: 'production' });
  } catch (error) {
    throw new CliError(`the UI build of ${folder.manifest.id} failed: ${(error as Error).message}`);
  }
  if (!existsSync(target.remoteEntry)) {
    throw new CliError(`the UI build of ${folder.manifest.id} produced no ${folder.manifest.web!.remoteEntry}: check that ${WEB_CONFIG} uses aiplatRemote(import.meta.dirname)`);
  }
  return { outDir: target.outDir, ...sizeOf(target.outDir) };
}

function sizeOf(dir: string): { files: number; size: number } {
  const { files, bytes } = folderSize(dir);
  return { files, size: bytes };
}

/** `aiplat-plugin build [dir]`. */
export async function buildPlugin(dir = '.', options: BuildOptions = {}): Promise<BuildResult> {
  const output = options.output ?? consoleOutput;
  const folder = readPluginFolder(dir);
  const started = Date.now();
  const backend = await buildBackend(folder, output);
  if (backend) {
    output.info(
      `backend  ${BACKEND_OUT}  ${formatSize(backend.size)} (source map ${formatSize(backend.mapSize)}), ${backend.modules} ${backend.modules === 1 ? 'module' : 'modules'} bundled, @aiplat/plugin-sdk external`,
    );
  } else {
    output.info('backend  (none: the manifest has no backend.entry)');
  }
  const ui = options.ui === false ? undefined : await buildUi(folder);
  if (ui) output.info(`ui       ${path.relative(folder.dir, ui.outDir).split(path.sep).join('/')}/  ${ui.files} files, ${formatSize(ui.size)}`);
  output.info(`built ${folder.manifest.id} ${folder.manifest.version} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { folder, ...(backend ? { backend } : {}), ...(ui ? { ui } : {}) };
}
