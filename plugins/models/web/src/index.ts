import { defineUiPlugin } from '@aiplat/plugin-sdk/web';
import en from './locales/en.ts';
import zhCN from './locales/zh-CN.ts';

/**
 * models' UI: the model list (`/models`), a model's page (`/models/:id`: card, versions, promotion,
 * comparison, and the tabs other plugins aim at `models.version`, e.g. lineage's graph), and
 * `/models/versions/:id`, the address lineage links a model version to, which opens its model's page.
 */
export default defineUiPlugin({
  components: {
    list: () => import('./ModelsPage.vue'),
    model: () => import('./ModelPage.vue'),
    version: () => import('./VersionRedirect.vue'),
  },
  messages: { en, 'zh-CN': zhCN },
});
