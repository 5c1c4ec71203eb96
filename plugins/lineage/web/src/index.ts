import { defineUiPlugin } from '@aiplat/plugin-sdk/web';
import en from './locales/en.ts';
import zhCN from './locales/zh-CN.ts';

/**
 * lineage's UI: the `/lineage` page, and the `graph` tab other plugins' pages embed
 * (`useContributedTabs(...)` or `<AipContribution plugin="lineage" contribution="graph" :props="{ kind, id }" />`).
 */
export default defineUiPlugin({
  components: {
    explorer: () => import('./LineagePage.vue'),
    graph: () => import('./LineageGraph.vue'),
  },
  messages: { en, 'zh-CN': zhCN },
});
