/**
 * Enabling and disabling plugins from the console: the plugin status the admin API answers, the
 * plugins a change takes along (enabled dependents of a plugin being disabled, not-enabled
 * dependencies of one being enabled, transitively) and the request that makes the change.
 */
import { ref, shallowRef } from 'vue';
import { useI18n } from 'vue-i18n';
import { ElMessage } from 'element-plus';
import { coreApi, useErrorMessage, useLocalized, type LocalizedText } from '@aiplat/plugin-sdk/web';

export type PluginState = 'enabled' | 'disabled' | 'failed';

/** One plugin as `GET /api/v1/plugins` lists it. */
export interface PluginStatus {
  id: string;
  version: string;
  displayName?: LocalizedText;
  state: PluginState;
  reason?: string;
  dependencies: string[];
  optionalDependencies?: string[];
  dependents: string[];
  aliases?: string[];
  source?: string;
}

export type ToggleAction = 'enable' | 'disable';

/** What `POST /plugins/:id/enable|disable` answers. */
export interface ToggleResult {
  changed: string[];
  items: PluginStatus[];
}

function closure(start: PluginStatus, plugins: PluginStatus[], next: (p: PluginStatus) => string[], include: (p: PluginStatus) => boolean): PluginStatus[] {
  const byId = new Map(plugins.map((p) => [p.id, p]));
  const seen = new Set<string>([start.id]);
  const out: PluginStatus[] = [];
  const queue = [...next(byId.get(start.id) ?? start)];
  while (queue.length > 0) {
    const id = queue.shift()!;
    if (seen.has(id)) continue;
    seen.add(id);
    const plugin = byId.get(id);
    if (!plugin || !include(plugin)) continue;
    out.push(plugin);
    queue.push(...next(plugin));
  }
  return out;
}

/** The enabled plugins that depend on `plugin`, directly or through others: disabling it disables them. */
export function cascadeForDisable(plugin: PluginStatus, plugins: PluginStatus[]): PluginStatus[] {
  return closure(plugin, plugins, (p) => p.dependents, (p) => p.state === 'enabled');
}

/** The plugins `plugin` needs, directly or through others, that are not enabled: enabling it enables them. */
export function cascadeForEnable(plugin: PluginStatus, plugins: PluginStatus[]): PluginStatus[] {
  return closure(plugin, plugins, (p) => p.dependencies, (p) => p.state !== 'enabled');
}

export function cascadeFor(action: ToggleAction, plugin: PluginStatus, plugins: PluginStatus[]): PluginStatus[] {
  return action === 'disable' ? cascadeForDisable(plugin, plugins) : cascadeForEnable(plugin, plugins);
}

/** Send the change; `cascade` takes the dependents (or dependencies) along. */
export function togglePlugin(id: string, action: ToggleAction, cascade: boolean): Promise<ToggleResult> {
  return coreApi.post<ToggleResult>(`/plugins/${encodeURIComponent(id)}/${action}`, undefined, cascade ? { query: { cascade: true } } : {});
}

/** Every installed plugin, for working out a change's cascade. */
export async function listPlugins(): Promise<PluginStatus[]> {
  return (await coreApi.get<{ items: PluginStatus[] }>('/plugins')).items;
}

/**
 * The state behind the enable/disable confirmation: `ask` works out the cascade (from `plugins`
 * when given, else from a fresh list) and opens the dialog; `confirm` sends the change and reports
 * what changed, or the translated error, in a message.
 */
export function usePluginToggle(options: { plugins?: () => PluginStatus[] | undefined; onChanged?: (result: ToggleResult) => void }) {
  const { t } = useI18n();
  const localized = useLocalized();
  const errorMessage = useErrorMessage();
  const open = ref(false);
  const preparing = ref(false);
  const action = ref<ToggleAction>('disable');
  const target = shallowRef<PluginStatus>();
  const cascade = shallowRef<PluginStatus[]>([]);
  let known: PluginStatus[] = [];

  const nameOf = (p: PluginStatus | undefined) => (p ? localized(p.displayName) || p.id : '');

  async function ask(plugin: PluginStatus, what: ToggleAction): Promise<void> {
    if (preparing.value) return;
    preparing.value = true;
    try {
      known = options.plugins?.() ?? (await listPlugins());
      action.value = what;
      target.value = known.find((p) => p.id === plugin.id) ?? plugin;
      cascade.value = cascadeFor(what, target.value, known);
      open.value = true;
    } catch (e) {
      ElMessage.error({ message: errorMessage(e), grouping: true });
    } finally {
      preparing.value = false;
    }
  }

  async function confirm(): Promise<void> {
    const plugin = target.value;
    if (!plugin) return;
    try {
      const result = await togglePlugin(plugin.id, action.value, cascade.value.length > 0);
      const names = result.changed.map((id) => nameOf(result.items.find((p) => p.id === id) ?? known.find((p) => p.id === id)) || id);
      if (names.length === 0) ElMessage.info(t('plugins.toggle.unchanged', { name: nameOf(plugin) }));
      else {
        const list = names.map((name) => t('plugins.quoted', { name })).join(t('plugins.listSeparator'));
        ElMessage.success(t(action.value === 'disable' ? 'plugins.toggle.disabledDone' : 'plugins.toggle.enabledDone', { names: list }));
      }
      options.onChanged?.(result);
    } catch (e) {
      ElMessage.error({ message: errorMessage(e), duration: 8000, showClose: true });
      options.onChanged?.({ changed: [], items: [] });
    }
  }

  return { open, preparing, action, target, cascade, nameOf, ask, confirm };
}
