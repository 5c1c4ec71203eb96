/**
 * Build presets for aiplat web UIs (`@aiplat/plugin-sdk/vite`).
 *
 * A plugin's UI build is one line:
 *
 * ```ts
 * // examples/hello/web/vite.config.ts
 * import { aiplatRemote } from '@aiplat/plugin-sdk/vite';
 * export default aiplatRemote(import.meta.dirname);
 * ```
 *
 * It reads the plugin's `aiplat-plugin.json`, exposes `./plugin` (the module that calls
 * `defineUiPlugin`, `web/src/index.ts` by default) and marks the libraries the shell provides as
 * shared singletons: vue, vue-router, pinia, vue-i18n, the SDK's web part and Element Plus one
 * component at a time (ADR 0007).
 */
import { createRequire } from 'node:module';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import vue from '@vitejs/plugin-vue';
import { federation } from '@module-federation/vite';
import Components from 'unplugin-vue-components/vite';
import type { PluginOption, UserConfig } from 'vite';
import { remoteName } from '../src/manifest.js';
import { elementPlusEntries, elementPlusPerComponent, elementPlusResolvers } from './element-plus.js';

export { elementPlusEntries, elementPlusPerComponent, elementPlusResolvers, sharedChunkName, type ImportStyle } from './element-plus.js';

const require = createRequire(import.meta.url);

function installedVersion(pkg: string): string {
  const file = pkg === '@aiplat/plugin-sdk' ? path.join(import.meta.dirname, '..', 'package.json') : require.resolve(`${pkg}/package.json`);
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

/** The shared name of the SDK's web part. */
export const SDK_WEB = '@aiplat/plugin-sdk/web';

interface SharedItem {
  singleton: boolean;
  requiredVersion: string;
  version?: string;
  import?: false;
  eager?: boolean;
}

/**
 * The libraries the shell provides and every remote takes from it (singletons: the shell's copy is
 * always the one loaded, a remote's fallback copy is never fetched inside the shell).
 */
export function sharedLibraries(role: 'host' | 'remote'): Record<string, SharedItem> {
  const caret = (pkg: string) => `^${installedVersion(pkg)}`;
  const item = (requiredVersion: string, version?: string, eager = false): SharedItem => ({
    singleton: true,
    requiredVersion,
    ...(version ? { version } : {}),
    ...(role === 'remote' ? { import: false as const } : {}),
    // The libraries every page needs come with the shell's first chunk rather than one after
    // another on demand (each lazy shared module is a round trip before the next can start).
    ...(role === 'host' && eager ? { eager: true } : {}),
  });
  const ep = elementPlusEntries();
  const shared: Record<string, SharedItem> = {
    vue: item(caret('vue'), undefined, true),
    'vue-router': item(caret('vue-router'), undefined, true),
    pinia: item(caret('pinia'), undefined, true),
    'vue-i18n': item(caret('vue-i18n'), undefined, true),
    [SDK_WEB]: item(`^${installedVersion('@aiplat/plugin-sdk')}`, installedVersion('@aiplat/plugin-sdk'), true),
  };
  // The shell provides every component entry (each its own lazily loaded chunk); a remote declares
  // the prefix, which shares exactly the entries it imports.
  if (role === 'host') for (const entry of ep.entries) shared[entry] = item(`~${ep.version}`, ep.version);
  else shared['element-plus/'] = item(`~${ep.version}`, ep.version);
  return shared;
}

/**
 * The Vue, Element Plus and auto-import plugins of the shell (`host`) and of remotes: a remote
 * imports Element Plus by its shared names, the shell by file (see {@link ImportStyle}).
 */
export function vuePlugins(role: 'host' | 'remote' = 'remote'): PluginOption[] {
  const style = role === 'host' ? 'local' : 'shared';
  return [vue(), Components({ dts: false, dirs: [], resolvers: elementPlusResolvers(style) }), elementPlusPerComponent(style)];
}

interface ManifestWeb {
  id: string;
  web?: { remoteEntry: string };
}

export interface RemoteOptions {
  /** Modules the remote exposes; default `{ './plugin': './src/index.ts' }` relative to the web folder. */
  exposes?: Record<string, string>;
  /** More Vite config merged over the preset's (e.g. `server.port` for `npm run dev`). */
  vite?: UserConfig;
}


/**
 * Vite config for a plugin's UI remote. `webDir` is the folder holding the remote's
 * `vite.config.ts` (usually `<plugin>/web`); the manifest is looked up beside or above it.
 */
export function aiplatRemote(webDir: string, options: RemoteOptions = {}): UserConfig {
  const manifestFile = [path.join(webDir, 'aiplat-plugin.json'), path.join(webDir, '..', 'aiplat-plugin.json')].find((f) => existsSync(f));
  if (!manifestFile) throw new Error(`no aiplat-plugin.json in ${webDir} or its parent`);
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as ManifestWeb;
  if (!manifest.web) throw new Error(`${manifestFile} has no "web" section: add { "remoteEntry": "web/dist/remoteEntry.js" }`);
  const pluginRoot = path.dirname(manifestFile);
  const outDir = path.dirname(path.resolve(pluginRoot, manifest.web.remoteEntry));
  const filename = path.basename(manifest.web.remoteEntry);
  const exposes = options.exposes ?? { './plugin': './src/index.ts' };
  return {
    root: webDir,
    base: './',
    logLevel: 'warn',
    ...options.vite,
    plugins: [
      ...vuePlugins(),
      federation({
        name: remoteName(manifest.id),
        filename,
        manifest: true,
        exposes,
        shared: sharedLibraries('remote'),
        // The shell is the only provider; take what it has loaded, load the rest on first use.
        shareStrategy: 'loaded-first',
        // The shell publishes its federation runtime; a remote uses it rather than its own copy.
        experiments: { externalRuntime: true },
        dts: false,
      }),
      ...((options.vite?.plugins as PluginOption[] | undefined) ?? []),
    ],
    build: {
      outDir,
      emptyOutDir: true,
      target: 'es2022',
      // A remote has no page of its own: its entry is the exposed module (the federation plugin adds remoteEntry.js).
      rolldownOptions: { input: Object.values(exposes).map((file) => path.resolve(webDir, file)) },
      ...options.vite?.build,
    },
  };
}
