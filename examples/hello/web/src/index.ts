import { defineUiPlugin } from '@aiplat/plugin-sdk/web';
import en from './locales/en.ts';
import zhCN from './locales/zh-CN.ts';

/**
 * hello's UI: one component per contribution of aiplat-plugin.json's `web.contributions` (by id),
 * each loaded when the shell first shows it, and its strings, merged under `hello.` in the shell.
 */
export default defineUiPlugin({
  components: {
    greeter: () => import('./HelloPage.vue'),
    'greetings-widget': () => import('./HelloWidget.vue'),
  },
  messages: { en, 'zh-CN': zhCN },
});
