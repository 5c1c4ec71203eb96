import { defineUiPlugin } from '@aiplat/plugin-sdk/web';
import en from './locales/en.ts';
import zhCN from './locales/zh-CN.ts';

/**
 * serving's UI: the deployments list with the "Deploy" wizard (`/serving`), a deployment's page
 * (`/serving/deployments/:id`: state, replicas, revisions with change and rollback, canary traffic,
 * logs, generated API docs and the gateway's monitoring), the playground (`/serving/playground`),
 * the gateway's API keys (`/serving/keys`) and its usage report (`/serving/usage`). The component
 * keys are the manifest's page contribution ids.
 */
export default defineUiPlugin({
  components: {
    deployments: () => import('./DeploymentsPage.vue'),
    deployment: () => import('./DeploymentPage.vue'),
    playground: () => import('./PlaygroundPage.vue'),
    keys: () => import('./KeysPage.vue'),
    usage: () => import('./UsagePage.vue'),
  },
  messages: { en, 'zh-CN': zhCN },
});
