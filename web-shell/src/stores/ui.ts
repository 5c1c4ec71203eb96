/**
 * What the enabled plugins contribute to the shell (`GET /api/v1/ui/remotes`), kept current by the
 * `ui` stream topic: a plugin enabled or disabled anywhere changes every open shell's navigation,
 * routes and dashboard within a second, without a reload.
 */
import { defineStore } from 'pinia';
import { computed, ref, shallowRef } from 'vue';
import { coreApi, stream, type WebContribution, type WebContributionKind } from '@aiplat/plugin-sdk/web';
import { registerAll, type UiRemote } from '../federation.ts';

export interface PlacedContribution extends WebContribution {
  pluginId: string;
  remote: UiRemote;
}

export const useUi = defineStore('ui', () => {
  const remotes = shallowRef<UiRemote[]>([]);
  const loaded = ref(false);
  const error = ref<unknown>(null);
  let inflight: Promise<void> | null = null;
  let again = false;
  let unsubscribe: (() => void) | null = null;
  const listeners = new Set<() => void>();

  async function fetchOnce(): Promise<void> {
    try {
      const page = await coreApi.get<{ items: UiRemote[] }>('/ui/remotes');
      registerAll(page.items);
      remotes.value = page.items;
      error.value = null;
    } catch (e) {
      error.value = e;
    }
    loaded.value = true;
    for (const listener of listeners) listener();
  }

  /** Load the remotes; calls made while a load runs coalesce into one more load after it. */
  function load(): Promise<void> {
    if (inflight) {
      again = true;
      return inflight;
    }
    inflight = (async () => {
      do {
        again = false;
        await fetchOnce();
      } while (again);
      inflight = null;
    })();
    return inflight;
  }

  /** Follow the `ui` topic (plugin UI enabled or disabled) while signed in. */
  function follow(): void {
    if (unsubscribe) return;
    unsubscribe = stream.subscribe('ui', () => void load(), { onReset: () => void load() });
  }

  function reset(): void {
    unsubscribe?.();
    unsubscribe = null;
    remotes.value = [];
    loaded.value = false;
  }

  function onChange(listener: () => void): () => void {
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  const contributions = computed<PlacedContribution[]>(() =>
    remotes.value.flatMap((remote) => remote.contributions.map((c) => ({ ...c, pluginId: remote.pluginId, remote }))),
  );

  function ofKind(kind: WebContributionKind): PlacedContribution[] {
    return contributions.value.filter((c) => c.kind === kind);
  }

  function remoteOf(pluginId: string): UiRemote | undefined {
    return remotes.value.find((r) => r.pluginId === pluginId);
  }

  return { remotes, loaded, error, load, follow, reset, onChange, contributions, ofKind, remoteOf };
});
