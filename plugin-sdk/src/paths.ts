/**
 * Path checks every plugin that stores user-named files, or reads server folders, needs: a file's
 * path inside a dataset or a model version, and a server folder that must lie under the folders an
 * administrator allowed.
 */
import { existsSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AiplatError } from './errors.js';

/**
 * `p` when it is a plain relative `/`-separated path (no `..`, `.` or empty segment, no leading
 * `/`, no backslash or NUL, at most 1024 characters and 255 per segment); a `validation_failed`
 * error naming it otherwise.
 */
export function checkRelativePath(p: string): string {
  const segments = p.split('/');
  const bad =
    p.length === 0 ||
    p.length > 1024 ||
    p.includes('\\') ||
    p.includes('\0') ||
    p.startsWith('/') ||
    segments.some((s) => s === '' || s === '.' || s === '..' || s.length > 255);
  if (bad) throw new AiplatError('validation_failed', `The file path ${JSON.stringify(p)} is not a plain relative path (no "..", no leading "/", no empty segment)`, { path: p });
  return p;
}

/**
 * The real path of `given` (links resolved) when it lies under one of `roots`; otherwise a clear
 * error: `conflict` when no root is configured (the feature is off), `validation_failed` for a
 * relative path or a `..` segment, `not_found` when nothing is there, `forbidden` outside the roots.
 * `setting` names the plugin setting that lists the roots, for the messages (`"importRoots" of the
 * models plugin`).
 */
export async function resolveUnderRoots(given: string, roots: readonly string[], setting: string): Promise<string> {
  const configured = roots.filter((r) => r.trim() !== '');
  if (configured.length === 0) {
    throw new AiplatError('conflict', `Imports are turned off: an administrator must list the server folders imports may read in the setting ${setting}`, { setting });
  }
  if (!path.isAbsolute(given)) throw new AiplatError('validation_failed', `The path ${JSON.stringify(given)} must be absolute`, { path: given });
  if (given.split(/[/\\]/).includes('..')) throw new AiplatError('validation_failed', `The path ${JSON.stringify(given)} has a ".." segment: refused`, { path: given });
  const real = await realpath(given).catch(() => undefined);
  if (real === undefined) throw new AiplatError('not_found', `No folder or file ${given} on the server`, { path: given });
  for (const root of configured) {
    const realRoot = await realpath(root).catch(() => undefined);
    if (!realRoot) continue;
    const rel = path.relative(realRoot, real);
    if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) return real;
  }
  throw new AiplatError('forbidden', `${given} is not inside an import root (setting ${setting})`, { path: given, roots: configured });
}

/**
 * The folder of the plugin a module belongs to: the nearest folder above it holding
 * `aiplat-plugin.json`. Pass `import.meta.url`. A plugin's own files (a Python launcher under
 * `runtime/`) are found from it the same way in a checkout (`src/index.ts`) and in an installed
 * package (`dist/backend/index.js`), where a fixed `../` would differ.
 */
export function pluginRootOf(moduleUrlOrPath: string): string {
  const file = moduleUrlOrPath.startsWith('file:') ? fileURLToPath(moduleUrlOrPath) : moduleUrlOrPath;
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'aiplat-plugin.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no aiplat-plugin.json above ${file}`);
  }
}
