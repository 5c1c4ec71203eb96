/**
 * The shell as the SDK's contribution host: lets plugin pages host `tab` contributions aimed at
 * them (`useContributedTabs`) and embed another plugin's contribution (`<AipContribution>`).
 */
import { defineAsyncComponent } from 'vue';
import { session, setContributionHost, type WebContribution } from '@aiplat/plugin-sdk/web';
import { useUi } from './stores/ui.ts';

export const visibleContribution = (c: WebContribution) => {
  void session.state.user; // so a computed follows a change of user
  return !c.permission || session.can(c.permission);
};

export function installContributionHost(): void {
  setContributionHost({
    tabs: (target) =>
      useUi()
        .ofKind('tab')
        .filter((c) => (c.target === target || c.target === '*') && visibleContribution(c))
        .sort((a, b) => (a.order ?? 0) - (b.order ?? 0)),
    find: (pluginId, id) => useUi().contributions.find((c) => c.pluginId === pluginId && c.id === id && visibleContribution(c)),
    // Loaded only by a page that embeds something: nothing added to the shell's first load.
    component: defineAsyncComponent(() => import('./components/EmbeddedContribution.vue')),
  });
}
