/**
 * Element Plus, shared one component at a time (ADR 0007).
 *
 * The host provides every component entry of Element Plus (`element-plus/es/components/<name>/index.mjs`)
 * as its own module-federation shared singleton, so a page loads only the components it uses and every
 * remote uses the host's copy (one config provider, one z-index manager, one locale). This module knows
 * the entries and rewrites `import { ElButton } from 'element-plus'` into the per-component import.
 */
import { createRequire } from 'node:module';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { Plugin } from 'vite';

const require = createRequire(import.meta.url);

export interface ElementPlusEntries {
  version: string;
  /** Every component entry, e.g. `element-plus/es/components/button/index.mjs`. */
  entries: string[];
  /** Export name (ElButton, ElMessage, vLoading, ...) → the entry that defines it. */
  exports: Map<string, string>;
}

let cached: ElementPlusEntries | undefined;

function kebab(name: string): string {
  return name.replace(/^El/, '').replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

/** Read the installed Element Plus: its version, component entries and the names each exports. */
export function elementPlusEntries(): ElementPlusEntries {
  if (cached) return cached;
  const pkgFile = require.resolve('element-plus/package.json');
  const root = path.dirname(pkgFile);
  const version = (JSON.parse(readFileSync(pkgFile, 'utf8')) as { version: string }).version;
  const componentsDir = path.join(root, 'es', 'components');
  const entries: string[] = [];
  const candidates = new Map<string, string[]>();
  for (const dir of readdirSync(componentsDir).sort()) {
    const file = path.join(componentsDir, dir, 'index.mjs');
    if (!existsSync(file)) continue;
    const specifier = `element-plus/es/components/${dir}/index.mjs`;
    entries.push(specifier);
    const source = readFileSync(file, 'utf8');
    for (const block of source.matchAll(/export\s*\{([^}]*)\}/g)) {
      for (const part of block[1]!.split(',')) {
        const name = part.trim().split(/\s+as\s+/).pop()!.trim();
        if (!/^(El[A-Z]|v[A-Z])/.test(name)) continue;
        const list = candidates.get(name) ?? [];
        list.push(dir);
        candidates.set(name, list);
      }
    }
  }
  const exports = new Map<string, string>();
  for (const [name, dirs] of candidates) {
    // A name re-exported by several entries (ElButtonGroup from button and button-group) belongs
    // to the entry named after it when there is one.
    const own = dirs.find((d) => d === kebab(name)) ?? dirs[0]!;
    exports.set(name, `element-plus/es/components/${own}/index.mjs`);
  }
  cached = { version, entries, exports };
  return cached;
}

const IMPORT_RE = /import\s*\{([^}]*)\}\s*from\s*(['"])element-plus\2\s*;?/g;

/**
 * Vite plugin: rewrite named imports from `element-plus` into per-component imports. Type-only
 * names are gone by the time it runs (it runs after the TypeScript and Vue transforms).
 */
export function elementPlusPerComponent(): Plugin {
  return {
    name: 'aiplat:element-plus-per-component',
    enforce: 'post',
    transform(code, id) {
      if (id.includes('/node_modules/') || !code.includes('element-plus')) return null;
      const { exports } = elementPlusEntries();
      let changed = false;
      const out = code.replace(IMPORT_RE, (_all, names: string) => {
        const bySpecifier = new Map<string, string[]>();
        for (const raw of names.split(',')) {
          const part = raw.trim();
          if (!part || part.startsWith('type ')) continue;
          const imported = part.split(/\s+as\s+/)[0]!.trim();
          const specifier = exports.get(imported);
          if (!specifier) {
            this.error(
              `"${imported}" is not a component export of element-plus; import it from its own path (e.g. element-plus/es/...)` +
                ' so the host can share it (ADR 0007)',
            );
          }
          const list = bySpecifier.get(specifier) ?? [];
          list.push(part);
          bySpecifier.set(specifier, list);
        }
        changed = true;
        return [...bySpecifier].map(([spec, parts]) => `import { ${parts.join(', ')} } from '${spec}';`).join('\n');
      });
      return changed ? { code: out, map: null } : null;
    },
  };
}

/**
 * A resolver for unplugin-vue-components: `<el-button>` in a template imports ElButton from its
 * own entry; `v-loading` imports vLoading.
 */
export function elementPlusResolvers() {
  return [
    {
      type: 'component' as const,
      resolve(name: string) {
        const specifier = elementPlusEntries().exports.get(name);
        return specifier && name.startsWith('El') ? { name, from: specifier } : undefined;
      },
    },
    {
      type: 'directive' as const,
      resolve(name: string) {
        const exportName = `v${name}`;
        const specifier = elementPlusEntries().exports.get(exportName);
        return specifier ? { name: exportName, from: specifier } : undefined;
      },
    },
  ];
}
