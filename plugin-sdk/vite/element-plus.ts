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
let root: string | undefined;

/** The installed element-plus folder. */
function elementPlusRoot(): string {
  root ??= path.dirname(require.resolve('element-plus/package.json'));
  return root;
}

/**
 * How the code being built imports an entry. A remote imports the shared name, which module
 * federation answers with the shell's module. The shell — the provider — imports the file itself:
 * the same module the shared name gives remotes, but loaded when a page first shows it, where an
 * import of the shared name would make the federation runtime load it at start.
 */
export type ImportStyle = 'shared' | 'local';

function specifierFor(entry: string, style: ImportStyle): string {
  // The query keeps the federation plugin from taking the file for its shared name.
  return style === 'local' ? `${path.join(elementPlusRoot(), entry.slice('element-plus/'.length))}?aiplat-local` : entry;
}

function kebab(name: string): string {
  return name.replace(/^El/, '').replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

/** Read the installed Element Plus: its version, component entries and the names each exports. */
export function elementPlusEntries(): ElementPlusEntries {
  if (cached) return cached;
  const pkgFile = path.join(elementPlusRoot(), 'package.json');
  const version = (JSON.parse(readFileSync(pkgFile, 'utf8')) as { version: string }).version;
  const componentsDir = path.join(elementPlusRoot(), 'es', 'components');
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
export function elementPlusPerComponent(style: ImportStyle = 'shared'): Plugin {
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
        return [...bySpecifier].map(([spec, parts]) => `import { ${parts.join(', ')} } from '${specifierFor(spec, style)}';`).join('\n');
      });
      return changed ? { code: out, map: null } : null;
    },
  };
}

/**
 * A resolver for unplugin-vue-components: `<el-button>` in a template imports ElButton from its
 * own entry; `v-loading` imports vLoading.
 */
export function elementPlusResolvers(style: ImportStyle = 'shared') {
  return [
    {
      type: 'component' as const,
      resolve(name: string) {
        const specifier = elementPlusEntries().exports.get(name);
        return specifier && name.startsWith('El') ? { name, from: specifierFor(specifier, style) } : undefined;
      },
    },
    {
      type: 'directive' as const,
      resolve(name: string) {
        const exportName = `v${name}`;
        const specifier = elementPlusEntries().exports.get(exportName);
        return specifier ? { name: exportName, from: specifierFor(specifier, style) } : undefined;
      },
    },
  ];
}

const PACKAGE_RE = /.*node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)[\\/]/;

/** Packages big enough to get a chunk of their own (ECharts and its renderer, each under 500 kB). */
const OWN_CHUNK = new Set(['echarts', 'zrender']);

/**
 * Chunk names for the shell's build (rolldown `codeSplitting.groups[].name`): ECharts and zrender
 * apart (loaded only by charts, and together over the 500 kB chunk budget); everything else is
 * placed by the bundler by which pages reach it (`null`).
 */
export function sharedChunkName(id: string): string | null {
  const pkg = PACKAGE_RE.exec(id)?.[1]?.replace(/\\/g, '/');
  return pkg && OWN_CHUNK.has(pkg) ? `vendor-${pkg}` : null;
}
