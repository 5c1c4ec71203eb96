/**
 * Reading a plugin folder's `aiplat-plugin.json` and checking it the way the core will.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import semver from 'semver';
import { MANIFEST_FILE, PLUGIN_API_VERSION, type PluginManifest } from '@aiplat/plugin-sdk';
import { manifestProblems } from '@aiplat/plugin-sdk/package';
import { CliError, readJson } from './util.js';


export interface PluginFolder {
  /** Absolute path of the plugin folder. */
  dir: string;
  manifestFile: string;
  manifest: PluginManifest;
}

/** Where a manifest field's path points, checked to stay inside the folder. */
export function insideFolder(dir: string, rel: string, field: string): string {
  const full = path.resolve(dir, rel);
  if (path.isAbsolute(rel) || !full.startsWith(dir + path.sep)) throw new CliError(`${MANIFEST_FILE}: ${field} "${rel}" must be a path inside the plugin folder`);
  return full;
}

/** Read and check the manifest of the plugin folder `dir` (default: the working directory). */
export function readPluginFolder(dir = '.'): PluginFolder {
  const root = path.resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new CliError(`${root} is not a folder`);
  const manifestFile = path.join(root, MANIFEST_FILE);
  if (!existsSync(manifestFile)) throw new CliError(`${root} has no ${MANIFEST_FILE}: run this in a plugin folder, or name one (aiplat-plugin create <name> makes a new one)`);
  const raw = readJson<unknown>(manifestFile, 'the manifest');
  const problems = manifestProblems(raw);
  if (problems.length > 0) {
    throw new CliError(`${manifestFile} is not a valid plugin manifest:\n  - ${problems.join('\n  - ')}`);
  }
  const manifest = raw as PluginManifest;
  if (!semver.validRange(manifest.engines.aiplat)) throw new CliError(`${MANIFEST_FILE}: engines.aiplat "${manifest.engines.aiplat}" is not a semver range`);
  if (!semver.satisfies(PLUGIN_API_VERSION, manifest.engines.aiplat)) {
    throw new CliError(`${MANIFEST_FILE}: engines.aiplat "${manifest.engines.aiplat}" does not accept the plugin API of this SDK (${PLUGIN_API_VERSION})`);
  }
  if (manifest.backend) insideFolder(root, manifest.backend.entry, 'backend.entry');
  if (manifest.web) insideFolder(root, manifest.web.remoteEntry, 'web.remoteEntry');
  return { dir: root, manifestFile, manifest };
}
