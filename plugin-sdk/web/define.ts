import type { App, Component } from 'vue';
import type { Router } from 'vue-router';
import type { Locale } from './messages.ts';

/** A component, or a lazy import of one (keeps a remote's first load small). */
export type ComponentLoader = Component | (() => Promise<Component | { default: Component }>);

export interface UiPluginContext {
  pluginId: string;
  app: App;
  router: Router;
}

export interface UiPluginDefinition {
  /**
   * The component behind each contribution declared in the manifest's `web.contributions`, by
   * contribution id: a lazy import `() => import('./Page.vue')` (a function is always taken as a
   * loader, so wrap a functional component in an object) or a component object. Pages get no props; tabs get `{ pluginId, resourceId }` of the page they sit
   * on; dashboard widgets get `{ size }`; settings panels get `{ pluginId }`.
   */
  components: Record<string, ComponentLoader>;
  /** Translations, merged into the shell's messages under the plugin's id: `t('<plugin id>.title')`. */
  messages?: Partial<Record<Locale, Record<string, unknown>>>;
  /** Runs once when the shell first loads the remote (e.g. to register a directive). */
  setup?(context: UiPluginContext): void | Promise<void>;
}

export interface UiPlugin extends UiPluginDefinition {
  readonly __aiplatUiPlugin: 1;
}

/** Declare a plugin's UI: the module a remote exposes as `./plugin` default-exports this. */
export function defineUiPlugin(definition: UiPluginDefinition): UiPlugin {
  if (!definition || typeof definition.components !== 'object') throw new TypeError('defineUiPlugin needs { components: { [contributionId]: component } }');
  return Object.freeze({ ...definition, __aiplatUiPlugin: 1 as const });
}

export function isUiPlugin(value: unknown): value is UiPlugin {
  return typeof value === 'object' && value !== null && (value as { __aiplatUiPlugin?: unknown }).__aiplatUiPlugin === 1;
}
