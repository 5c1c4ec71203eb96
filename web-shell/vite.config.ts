import { defineConfig } from 'vite';
import { federation } from '@module-federation/vite';
import { sharedChunkName, sharedLibraries, vuePlugins } from '@aiplat/plugin-sdk/vite';

// The shell is built once and served under any base path: assets are relative (`base: './'`) and
// the core writes a <base href> into index.html for PUBLIC_URL.
export default defineConfig({
  base: './',
  logLevel: 'warn',
  plugins: [
    ...vuePlugins('host'),
    // loaded-first: shared modules load when first imported, not all at start (the shell provides every
    // Element Plus entry; a page must download only the ones it shows).
    federation({
      name: 'aiplat_shell',
      remotes: {},
      shared: sharedLibraries('host'),
      shareStrategy: 'loaded-first',
      // One federation runtime for the page: remotes use the shell's instead of carrying their own.
      experiments: { provideExternalRuntime: true },
      dts: false,
    }),
  ],
  build: {
    target: 'es2022',
    // Current browsers preload modules natively; Vite's polyfill for the few that do not (which only
    // lose the preload hint without it) would cost every first load ~0.3 kB.
    modulePreload: { polyfill: false },
    outDir: 'dist',
    emptyOutDir: true,
    rolldownOptions: {
      output: {
        // One chunk per Element Plus component and per package (ADR 0007): a page loads what it
        // shows. ECharts (loaded only by charts) and its renderer zrender stay apart, under 500 kB each.
        // The federation plugin's groups (one per shared module) would otherwise pull each shared
        // module's whole dependency tree into its chunk, whoever else needs a part of it.
        codeSplitting: {
          includeDependenciesRecursively: false,
          groups: [
            { name: sharedChunkName, test: /node_modules/, debugName: 'aiplat-vendor' },
            // Everything the first page needs in one file: over HTTP/1.1 a browser fetches six files at
            // a time, so sixty small chunks cost several round trips before the first paint.
            // (in three — Vue and its libraries, Element Plus and the rest, the shell's own code — to
            // stay under the 500 kB chunk budget)
            { name: 'shell-vue', tags: ['$initial'], test: /node_modules[\\/](vue|@vue|vue-router|pinia|vue-i18n|@intlify)[\\/]/ },
            { name: 'shell-libraries', tags: ['$initial'], test: /node_modules/ },
            { name: 'shell-app', tags: ['$initial'] },
          ],
        },
        strictExecutionOrder: true,
      },
    },
  },
  // `npm run dev`: the core runs beside this dev server (AIPLAT_CORE_URL, default port 8080).
  server: {
    port: 5173,
    proxy: {
      '/api': { target: process.env.AIPLAT_CORE_URL ?? 'http://127.0.0.1:8080', ws: true },
      '/_remotes': process.env.AIPLAT_CORE_URL ?? 'http://127.0.0.1:8080',
    },
  },
});
