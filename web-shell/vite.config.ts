import { defineConfig } from 'vite';
import { federation } from '@module-federation/vite';
import { sharedLibraries, vuePlugins } from '@aiplat/plugin-sdk/vite';

// The shell is built once and served under any base path: assets are relative (`base: './'`) and
// the core writes a <base href> into index.html for PUBLIC_URL.
export default defineConfig({
  base: './',
  logLevel: 'warn',
  plugins: [
    ...vuePlugins(),
    federation({ name: 'aiplat_shell', remotes: {}, shared: sharedLibraries('host'), dts: false }),
  ],
  build: {
    target: 'es2022',
    outDir: 'dist',
    emptyOutDir: true,
    rolldownOptions: {
      output: {
        // ECharts is loaded only by charts; keep its renderer (zrender) in a chunk of its own so no
        // chunk passes the 500 kB budget.
        codeSplitting: {
          groups: [
            { name: 'zrender', test: /node_modules[\\/]zrender[\\/]/ },
            { name: 'echarts', test: /node_modules[\\/]echarts[\\/]/ },
          ],
        },
      },
    },
  },
  server: { port: 5173, proxy: { '/api': { target: 'http://127.0.0.1:8080', ws: true }, '/_remotes': 'http://127.0.0.1:8080' } },
});
