/**
 * Embedding another plugin's UI in a page of yours. The shell registers itself as the host
 * (`setContributionHost`, at boot); a plugin page then:
 *
 * - hosts every `tab` contribution aimed at it: `useContributedTabs('<your page id>')` lists the
 *   tabs (those with `target` equal to the page id, or `*` for "any page that hosts tabs") the user
 *   may see, and `<AipContribution>` renders one, with `{ pluginId, resourceKind, resourceId }`;
 * - or shows one named contribution: `<AipContribution plugin="lineage" contribution="graph" :props="{ kind, id }" />`.
 *
 * A contribution of a disabled plugin, or one the user may not see, renders nothing; one that fails
 * shows the shell's error card.
 */
import { computed, defineComponent, h, toValue, type Component, type ComputedRef, type MaybeRefOrGetter, type PropType } from 'vue';
import type { LocalizedText } from '../src/manifest.ts';

/** A contribution another page may embed. */
export interface EmbeddableContribution {
  pluginId: string;
  id: string;
  title: LocalizedText;
  target?: string;
  order?: number;
}

/** What the shell provides. */
export interface ContributionHost {
  /** The `tab` contributions aimed at `target` (or at `*`) the signed-in user may see, in order; reactive. */
  tabs(target: string): EmbeddableContribution[];
  /** One contribution of an enabled plugin the user may see; reactive. */
  find(pluginId: string, contributionId: string): EmbeddableContribution | undefined;
  /** Renders `{ pluginId, contributionId, props }`: the contribution's component, a skeleton, or the error card. */
  component: Component;
}

let host: ContributionHost | undefined;

/** Called by the shell at boot. */
export function setContributionHost(value: ContributionHost): void {
  host = value;
}

/** The tabs other plugins add to the page `target` (your page's id, e.g. `models.version`); reactive. */
export function useContributedTabs(target: MaybeRefOrGetter<string>): ComputedRef<(EmbeddableContribution & { key: string })[]> {
  return computed(() => (host?.tabs(toValue(target)) ?? []).map((c) => ({ ...c, key: `${c.pluginId}:${c.id}` })));
}

/** One contribution, when its plugin is enabled and the user may see it; reactive. */
export function useContribution(pluginId: MaybeRefOrGetter<string>, contributionId: MaybeRefOrGetter<string>): ComputedRef<EmbeddableContribution | undefined> {
  return computed(() => host?.find(toValue(pluginId), toValue(contributionId)));
}

/** Renders another plugin's contribution (its component gets `props`); nothing when it is not available. */
export const AipContribution = defineComponent({
  name: 'AipContribution',
  props: {
    plugin: { type: String, required: true },
    contribution: { type: String, required: true },
    props: { type: Object as PropType<Record<string, unknown>>, default: () => ({}) },
  },
  setup(p) {
    return () => (host ? h(host.component, { pluginId: p.plugin, contributionId: p.contribution, props: p.props }) : null);
  },
});
