import { defineUiPlugin } from '@aiplat/plugin-sdk/web';

export default defineUiPlugin({
  components: {
    greeter: () => import('./HelloPage.vue'),
    'greetings-widget': () => import('./HelloWidget.vue'),
  },
});
