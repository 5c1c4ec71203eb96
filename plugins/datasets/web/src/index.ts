import { defineUiPlugin } from '@aiplat/plugin-sdk/web';
import en from './locales/en.ts';
import zhCN from './locales/zh-CN.ts';

/**
 * datasets' UI: the list (`/datasets`), a dataset's page (`/datasets/:id`), and `/datasets/versions/:vid`
 * (where lineage links a dataset version), which moves on to its dataset's page with the version chosen.
 */
export default defineUiPlugin({
  components: {
    list: () => import('./DatasetsPage.vue'),
    detail: () => import('./DatasetPage.vue'),
    version: () => import('./VersionRedirect.vue'),
  },
  messages: { en, 'zh-CN': zhCN },
});
