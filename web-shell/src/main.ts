import { createApp } from 'vue';
import { createPinia } from 'pinia';
import 'element-plus/dist/index.css';
import 'element-plus/theme-chalk/dark/css-vars.css';
import './styles.css';
import App from './App.vue';
import { i18n } from './i18n.ts';
import { createShellRouter } from './router.ts';
import { attachFederation } from './federation.ts';

const app = createApp(App);
app.use(createPinia());
app.use(i18n);
const router = createShellRouter();
app.use(router);
attachFederation(app, router);
app.config.errorHandler = (error, _instance, info) => console.error(`[aiplat] ${info}:`, error);
app.mount('#app');
