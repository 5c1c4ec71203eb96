// The build side of ADR 0007: Element Plus shared one component entry at a time.
import { describe, expect, it } from 'vitest';
import { elementPlusEntries, elementPlusPerComponent, elementPlusResolvers, sharedChunkName } from './element-plus.js';
import { aiplatRemote, sharedLibraries, SDK_WEB } from './index.js';

type Transform = (this: { error(message: string): never }, code: string, id: string) => { code: string } | null;
const transform = elementPlusPerComponent().transform as unknown as Transform;
const ctx = {
  error(message: string): never {
    throw new Error(message);
  },
};

describe('Element Plus per component', () => {
  it('knows every component entry of the installed Element Plus and the entry of each export', () => {
    const ep = elementPlusEntries();
    expect(ep.version).toMatch(/^2\.14\./);
    expect(ep.entries.length).toBeGreaterThan(80);
    expect(ep.entries).toContain('element-plus/es/components/button/index.mjs');
    expect(ep.exports.get('ElButton')).toBe('element-plus/es/components/button/index.mjs');
    // Sub-components come from their parent's entry.
    expect(ep.exports.get('ElButtonGroup')).toBe('element-plus/es/components/button/index.mjs');
    expect(ep.exports.get('ElTableColumn')).toBe('element-plus/es/components/table/index.mjs');
    expect(ep.exports.get('ElMessage')).toBe('element-plus/es/components/message/index.mjs');
    expect(ep.exports.get('vLoading')).toBe('element-plus/es/components/loading/index.mjs');
  });

  it('rewrites named imports from element-plus into per-component imports, keeping aliases', () => {
    const out = transform.call(ctx, "import { ElButton, ElMessage as toast, ElTableColumn } from 'element-plus';\nconsole.log(ElButton);", '/src/App.vue');
    expect(out!.code).toContain("import { ElButton } from 'element-plus/es/components/button/index.mjs';");
    expect(out!.code).toContain("import { ElMessage as toast } from 'element-plus/es/components/message/index.mjs';");
    expect(out!.code).toContain("import { ElTableColumn } from 'element-plus/es/components/table/index.mjs';");
    expect(out!.code).not.toMatch(/from 'element-plus';/);
  });

  it('points the shell’s own imports at the files, so its pages load components lazily (ADR 0007)', () => {
    const local = elementPlusPerComponent('local').transform as unknown as Transform;
    const out = local.call(ctx, "import { ElTable } from 'element-plus';", '/src/Page.vue');
    expect(out!.code).toMatch(/^import \{ ElTable \} from '\/.+\/node_modules\/element-plus\/es\/components\/table\/index\.mjs\?aiplat-local';$/);
    const [components] = elementPlusResolvers('local');
    expect(components!.resolve('ElCard')!.from).toMatch(/\/element-plus\/es\/components\/card\/index\.mjs\?aiplat-local$/);
  });

  it('keeps ECharts and zrender in chunks of their own and leaves every other module to the bundler', () => {
    expect(sharedChunkName('/x/node_modules/echarts/lib/chart/line.js')).toBe('vendor-echarts');
    expect(sharedChunkName('/x/node_modules/echarts/node_modules/zrender/lib/zrender.js')).toBe('vendor-zrender');
    expect(sharedChunkName('/x/node_modules/element-plus/es/components/table/index.mjs')).toBeNull();
    expect(sharedChunkName('/x/web-shell/src/main.ts')).toBeNull();
  });

  it('leaves dependencies and code without element-plus imports alone', () => {
    expect(transform.call(ctx, "import { ElButton } from 'element-plus';", '/x/node_modules/lib/index.js')).toBeNull();
    expect(transform.call(ctx, "import { ref } from 'vue';", '/src/a.ts')).toBeNull();
  });

  it('refuses a name that is not a component export, saying how to import it', () => {
    expect(() => transform.call(ctx, "import { useNamespace } from 'element-plus';", '/src/a.ts')).toThrow(/"useNamespace" is not a component export of element-plus/);
  });

  it('resolves <el-*> tags and v-* directives of templates to their entries', () => {
    const [components, directives] = elementPlusResolvers();
    expect(components!.resolve('ElInputNumber')).toEqual({ name: 'ElInputNumber', from: 'element-plus/es/components/input-number/index.mjs' });
    expect(components!.resolve('RouterView')).toBeUndefined();
    expect(directives!.resolve('Loading')).toEqual({ name: 'vLoading', from: 'element-plus/es/components/loading/index.mjs' });
  });
});

describe('shared libraries', () => {
  it('has the host provide every Element Plus entry and the remotes consume what they import, without fallback copies', () => {
    const host = sharedLibraries('host');
    const remote = sharedLibraries('remote');
    for (const name of ['vue', 'vue-router', 'pinia', 'vue-i18n', SDK_WEB]) {
      expect(host[name]!.singleton).toBe(true);
      expect(host[name]!.import).toBeUndefined();
      expect(remote[name]!.import).toBe(false);
    }
    expect(host['element-plus/es/components/table/index.mjs']).toMatchObject({ singleton: true, requiredVersion: expect.stringMatching(/^~2\.14\./) });
    expect(Object.keys(remote).filter((k) => k.startsWith('element-plus'))).toEqual(['element-plus/']);
    expect(remote['element-plus/']!.import).toBe(false);
  });

  it('builds a remote config from the manifest: outDir and entry file from web.remoteEntry, ./plugin exposed', () => {
    const config = aiplatRemote(new URL('../../examples/hello/web', import.meta.url).pathname);
    expect(config.base).toBe('./');
    expect(config.build?.outDir).toMatch(/examples\/hello\/web\/dist$/);
    expect(() => aiplatRemote('/nonexistent/web')).toThrow(/no aiplat-plugin.json/);
  });
});
