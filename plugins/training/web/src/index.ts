import { defineUiPlugin } from '@aiplat/plugin-sdk/web';
import en from './locales/en.ts';
import zhCN from './locales/zh-CN.ts';

/**
 * training's UI: the runs list with the "New run" wizard (`/training`), and a run's page
 * (`/training/runs/:id`: state, live curves, logs, checkpoints, cancel and resume). `/training/runs/:id`
 * is also where lineage links a `training.run` node.
 */
export default defineUiPlugin({
  components: {
    runs: () => import('./RunsPage.vue'),
    run: () => import('./RunPage.vue'),
    compare: () => import('./ComparePage.vue'),
  },
  messages: { en, 'zh-CN': zhCN },
});
