import { defineUiPlugin } from '@aiplat/plugin-sdk/web';
import en from './locales/en.ts';
import zhCN from './locales/zh-CN.ts';

/**
 * serving's UI: the deployments list with the "Deploy" wizard (`/serving`), and a deployment's page
 * (`/serving/deployments/:id`: state, replicas, revisions with change and rollback, canary traffic,
 * logs and generated API docs). The component keys are the manifest's page contribution ids.
 */
export default defineUiPlugin({
  components: {
    deployments: () => import('./DeploymentsPage.vue'),
    deployment: () => import('./DeploymentPage.vue'),
  },
  messages: { en, 'zh-CN': zhCN },
});
