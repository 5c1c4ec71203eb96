import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import semver from 'semver';
import { MANIFEST_FILE, PLUGIN_API_VERSION, type PluginManifest } from '@aiplat/plugin-sdk';
import { manifestProblems } from '@aiplat/plugin-sdk/package';


export interface DiscoveredPlugin {
  dir: string;
  manifestPath: string;
  /** Set when the manifest is valid. */
  manifest?: PluginManifest;
  /** The id, from the manifest if valid, else the best guess (folder name). */
  id: string;
  version: string;
  /** Why this plugin cannot load, naming the file and field. */
  problem?: string;
}

function relative(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel.startsWith('..') ? file : rel;
}

/** Read and check one plugin folder's manifest without running any of its code. */
export function readManifest(dir: string): DiscoveredPlugin {
  const manifestPath = path.join(dir, MANIFEST_FILE);
  const base: DiscoveredPlugin = { dir, manifestPath, id: path.basename(dir), version: '0.0.0' };
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(manifestPath, 'utf8'));
  } catch (error) {
    return { ...base, problem: `${relative(manifestPath)} cannot be read as JSON: ${(error as Error).message}` };
  }
  if (raw && typeof raw === 'object' && typeof (raw as { id?: unknown }).id === 'string') base.id = (raw as { id: string }).id;
  if (raw && typeof raw === 'object' && typeof (raw as { version?: unknown }).version === 'string') base.version = (raw as { version: string }).version;
  const problems = manifestProblems(raw);
  if (problems.length > 0) {
    return { ...base, problem: `${relative(manifestPath)} is not a valid plugin manifest: ${problems.join('; ')}` };
  }
  const manifest = raw as PluginManifest;
  const range = manifest.engines.aiplat;
  if (!semver.validRange(range)) {
    return { ...base, problem: `${relative(manifestPath)}: engines.aiplat "${range}" is not a semver range` };
  }
  if (!semver.satisfies(PLUGIN_API_VERSION, range)) {
    return {
      ...base,
      problem: `${relative(manifestPath)}: engines.aiplat "${range}" does not accept this core's plugin API ${PLUGIN_API_VERSION}`,
    };
  }
  if (manifest.backend) {
    const entry = path.resolve(dir, manifest.backend.entry);
    if (!entry.startsWith(dir + path.sep)) {
      return { ...base, problem: `${relative(manifestPath)}: backend.entry "${manifest.backend.entry}" points outside the plugin folder` };
    }
    if (!existsSync(entry)) {
      return { ...base, problem: `${relative(manifestPath)}: backend.entry "${manifest.backend.entry}" does not exist` };
    }
  }
  // What the workers need travels inside the plugin (runtime/): every path it names must be there.
  const runtimePaths = [manifest.runtime?.python?.wheelhouse, manifest.runtime?.python?.requirements, ...(manifest.runtime?.images ?? []).map((i) => i.tarball)].filter(
    (p): p is string => typeof p === 'string',
  );
  for (const rel of runtimePaths) {
    const full = path.resolve(dir, rel);
    if (!full.startsWith(dir + path.sep) || !existsSync(full)) {
      return { ...base, problem: `${relative(manifestPath)}: runtime names "${rel}", which is not in the plugin folder` };
    }
  }
  if (manifest.web) {
    const entry = path.resolve(dir, manifest.web.remoteEntry);
    if (!entry.startsWith(dir + path.sep)) {
      return { ...base, problem: `${relative(manifestPath)}: web.remoteEntry "${manifest.web.remoteEntry}" points outside the plugin folder` };
    }
    // The built remote may be missing (not built yet): the shell then shows an error card for it.
    const seenIds = new Set<string>();
    for (const contribution of manifest.web.contributions ?? []) {
      if (seenIds.has(contribution.id)) {
        return { ...base, problem: `${relative(manifestPath)}: web.contributions: id "${contribution.id}" is used twice` };
      }
      seenIds.add(contribution.id);
    }
  }
  return { ...base, manifest };
}

/**
 * Every plugin folder in `dirs`: an entry is either a plugin folder itself (it holds
 * `aiplat-plugin.json`) or a folder of plugin folders. Later duplicates of an id are refused.
 */
export function discoverPlugins(dirs: string[]): DiscoveredPlugin[] {
  const found: DiscoveredPlugin[] = [];
  const seen = new Map<string, string>();
  const candidates = (root: string): string[] =>
    existsSync(path.join(root, MANIFEST_FILE))
      ? [root]
      : readdirSync(root)
          .sort()
          .map((name) => path.join(root, name));
  for (const root of dirs) {
    if (!existsSync(root)) continue;
    for (const dir of candidates(root)) {
      if (!statSync(dir).isDirectory() || !existsSync(path.join(dir, MANIFEST_FILE))) continue;
      const plugin = readManifest(dir);
      const first = seen.get(plugin.id);
      if (first) {
        found.push({ ...plugin, id: `${plugin.id}@${relative(dir)}`, manifest: undefined, problem: `${relative(plugin.manifestPath)}: plugin id "${plugin.id}" is already used by ${relative(first)}` });
        continue;
      }
      seen.set(plugin.id, dir);
      found.push(plugin);
    }
  }
  return found;
}
