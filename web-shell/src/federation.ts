/**
 * Plugin UI remotes at run time: register each enabled plugin's remote with the module-federation
 * runtime, load its `./plugin` module (the `defineUiPlugin` object) once, and hand out the component
 * of a contribution. Each plugin loads in isolation: one that fails rejects only its own panels.
 */
import { loadRemote, registerRemotes } from '@module-federation/runtime';
import { markRaw, type App, type Component } from 'vue';
import type { Router } from 'vue-router';
import { isUiPlugin, type Locale, type UiPlugin, type WebContribution, type LocalizedText } from '@aiplat/plugin-sdk/web';
import { i18n } from './i18n.ts';

export interface UiRemote {
  pluginId: string;
  version: string;
  displayName: LocalizedText;
  name: string;
  entry: string;
  contributions: WebContribution[];
}

const registered = new Map<string, string>();

/**
 * `npm run dev -- --plugin <id>` serves that plugin's remote from its own Vite dev server: its
 * entry replaces the built one (development builds only).
 */
const devRemotes: Record<string, string> = import.meta.env.DEV && import.meta.env.VITE_AIPLAT_DEV_REMOTES ? JSON.parse(import.meta.env.VITE_AIPLAT_DEV_REMOTES as string) : {};

function entryOf(remote: UiRemote): string {
  return devRemotes[remote.pluginId] ?? remote.entry;
}
const loaded = new Map<string, Promise<UiPlugin>>();
let appRef: App | undefined;
let routerRef: Router | undefined;

export function attachFederation(app: App, router: Router): void {
  appRef = app;
  routerRef = router;
}

/** Register (or re-register, after an upgrade changed its entry) every remote with the runtime. */
export function registerAll(remotes: UiRemote[]): void {
  const changed = remotes.filter((r) => registered.get(r.name) !== entryOf(r));
  if (changed.length === 0) return;
  registerRemotes(
    changed.map((r) => ({ name: r.name, entry: entryOf(r), type: 'module' as const })),
    { force: true },
  );
  for (const r of changed) {
    registered.set(r.name, entryOf(r));
    loaded.delete(r.name);
  }
}

/** The plugin's `defineUiPlugin` object; its messages are merged and its `setup` runs on first load. */
export function loadUiPlugin(remote: UiRemote): Promise<UiPlugin> {
  let promise = loaded.get(remote.name);
  if (!promise) {
    promise = (async () => {
      const module = (await loadRemote(`${remote.name}/plugin`)) as { default?: unknown } | undefined;
      const plugin = module?.default;
      if (!isUiPlugin(plugin)) throw new Error(`the remote's ./plugin module does not default-export defineUiPlugin({...})`);
      for (const [locale, messages] of Object.entries(plugin.messages ?? {})) {
        i18n.global.mergeLocaleMessage(locale as Locale, { [remote.pluginId]: messages });
      }
      if (plugin.setup && appRef && routerRef) await plugin.setup({ pluginId: remote.pluginId, app: appRef, router: routerRef });
      return plugin;
    })();
    // A failed load can be tried again (e.g. after the plugin was rebuilt) on the next request.
    promise.catch(() => loaded.delete(remote.name));
    loaded.set(remote.name, promise);
  }
  return promise;
}

/** The component of one contribution, loaded lazily. */
export async function contributionComponent(remote: UiRemote, contributionId: string): Promise<Component> {
  const plugin = await loadUiPlugin(remote);
  const loader = plugin.components[contributionId];
  if (!loader) throw Object.assign(new Error(`missing component "${contributionId}"`), { missingComponent: contributionId });
  if (typeof loader === 'function') {
    const result = await (loader as () => Promise<Component | { default: Component }>)();
    return markRaw((result as { default?: Component }).default ?? (result as Component));
  }
  return markRaw(loader as Component);
}

