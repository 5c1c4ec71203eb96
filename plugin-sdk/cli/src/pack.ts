/**
 * `aiplat-plugin pack`: build, stage exactly what a package holds (docs/adr/0010), write
 * SIGNATURE (signed with --key) and pack `<id>-<version>.tgz`.
 */
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HOST_LIBRARIES, packFolder, writeSignature, type SignatureDocument } from '@aiplat/plugin-sdk/package';
import { MANIFEST_FILE } from '@aiplat/plugin-sdk';
import { BACKEND_OUT, buildPlugin } from './build.js';
import { keyFromOptions } from './keys.js';
import { readPluginFolder } from './manifest.js';
import { CliError, consoleOutput, formatSize, shown, type Output } from './util.js';

/** Documents copied into the package when present (a warning names the missing ones). */
export const PACKAGE_DOCUMENTS = ['README.md', 'CHANGELOG.md', 'LICENSE'] as const;
/** The folder of what the plugin's workers need (a Python wheelhouse, image tarballs). */
export const RUNTIME_DIR = 'runtime';
/** Where a UI remote must be built, relative to the plugin folder. */
export const WEB_DIST = 'web/dist';

export interface PackOptions {
  /** The output file, or a folder to put `<id>-<version>.tgz` in (default: the working directory). */
  out?: string;
  /** A key pair file to sign with (default: AIPLAT_SIGNING_KEY, else unsigned). */
  key?: string;
  /** Run the build first (default true). */
  build?: boolean;
  output?: Output;
}

export interface PackResult {
  id: string;
  version: string;
  file: string;
  sha256: string;
  size: number;
  files: string[];
  signature: SignatureDocument;
}

/** Copy `src` (a folder) to `dest`, refusing links, special files and node_modules. */
function copyTree(src: string, dest: string, rel: string, skip: (name: string, siblings: Set<string>) => boolean = () => false): void {
  mkdirSync(dest, { recursive: true });
  const names = readdirSync(src).sort();
  const siblings = new Set(names);
  for (const name of names) {
    const childRel = `${rel}/${name}`;
    const from = path.join(src, name);
    const stat = lstatSync(from);
    if (stat.isSymbolicLink()) throw new CliError(`${childRel} is a link: a package holds only files and folders (put the file itself there)`);
    if (name === 'node_modules') {
      const host = stat.isDirectory() ? HOST_LIBRARIES.find((lib) => existsSync(path.join(from, lib))) : undefined;
      throw new CliError(
        host
          ? `${childRel}/${host}: a package may not carry its own copy of ${host}, which the host provides`
          : `${childRel}: a package may not hold node_modules (the build bundles the backend's dependencies)`,
      );
    }
    if (skip(name, siblings)) continue;
    if (stat.isDirectory()) copyTree(from, path.join(dest, name), childRel, skip);
    else if (stat.isFile()) copyFileSync(from, path.join(dest, name));
    else throw new CliError(`${childRel} is not a regular file`);
  }
}

/** Build files that are not part of the remote: dotfiles (build stamps) and precompressed copies (`x.js.br` beside `x.js`). */
function notPartOfRemote(name: string, siblings: Set<string>): boolean {
  if (name.startsWith('.')) return true;
  const precompressed = /^(.*)\.(br|gz)$/.exec(name);
  return precompressed !== null && siblings.has(precompressed[1]!);
}

/** Where the package goes: `--out` (a file, or an existing folder), else `<id>-<version>.tgz` here. */
function outputFile(out: string | undefined, id: string, version: string): string {
  const name = `${id}-${version}.tgz`;
  if (!out) return path.resolve(name);
  const resolved = path.resolve(out);
  if (existsSync(resolved) && statSync(resolved).isDirectory()) return path.join(resolved, name);
  if (out.endsWith('/') || out.endsWith(path.sep)) {
    mkdirSync(resolved, { recursive: true });
    return path.join(resolved, name);
  }
  mkdirSync(path.dirname(resolved), { recursive: true });
  return resolved;
}

/** Put together, in `stage`, exactly the files of the package (without SIGNATURE). */
export function stagePackage(dir: string, stage: string, output: Output = consoleOutput): void {
  const { manifest } = readPluginFolder(dir);
  const staged = structuredClone(manifest);
  if (manifest.backend) {
    const bundle = path.join(dir, BACKEND_OUT);
    if (!existsSync(bundle)) throw new CliError(`${BACKEND_OUT} does not exist: run aiplat-plugin build first (or pack without --no-build)`);
    staged.backend = { entry: BACKEND_OUT };
    copyTree(path.dirname(bundle), path.join(stage, path.dirname(BACKEND_OUT)), path.dirname(BACKEND_OUT));
  }
  if (manifest.web) {
    const entry = path.posix.normalize(manifest.web.remoteEntry.replace(/\\/g, '/')).replace(/^\.\//, '');
    if (!entry.startsWith(`${WEB_DIST}/`)) throw new CliError(`aiplat-plugin.json: web.remoteEntry "${manifest.web.remoteEntry}" must lie under ${WEB_DIST}/ (where aiplatRemote builds it)`);
    if (!existsSync(path.join(dir, entry))) throw new CliError(`${entry} does not exist: build the UI first (aiplat-plugin build), or pack without --no-build`);
    const remoteDir = path.posix.dirname(entry);
    copyTree(path.join(dir, remoteDir), path.join(stage, remoteDir), remoteDir, notPartOfRemote);
  }
  if (existsSync(path.join(dir, RUNTIME_DIR))) {
    const stat = lstatSync(path.join(dir, RUNTIME_DIR));
    if (!stat.isDirectory()) throw new CliError(`${RUNTIME_DIR} must be a folder (it is ${stat.isSymbolicLink() ? 'a link' : 'a file'})`);
    copyTree(path.join(dir, RUNTIME_DIR), path.join(stage, RUNTIME_DIR), RUNTIME_DIR);
  }
  const missing: string[] = [];
  for (const doc of PACKAGE_DOCUMENTS) {
    const file = path.join(dir, doc);
    if (!existsSync(file)) {
      missing.push(doc);
      continue;
    }
    if (!lstatSync(file).isFile()) throw new CliError(`${doc} must be a regular file (not a link or a folder)`);
    copyFileSync(file, path.join(stage, doc));
  }
  if (missing.length > 0) output.warn(`${manifest.id} has no ${missing.join(', ')}: the registry and the core's plugin page show these`);
  writeFileSync(path.join(stage, MANIFEST_FILE), `${JSON.stringify(staged, null, 2)}\n`);
}

/** `aiplat-plugin pack [dir]`. */
export async function packPlugin(dir = '.', options: PackOptions = {}): Promise<PackResult> {
  const output = options.output ?? consoleOutput;
  const root = path.resolve(dir);
  // Read the key first: a bad key file should fail before a long build.
  const key = keyFromOptions(options.key);
  if (options.build !== false) await buildPlugin(root, { output });
  const { manifest } = readPluginFolder(root);
  const stage = mkdtempSync(path.join(os.tmpdir(), 'aiplat-pack-'));
  try {
    stagePackage(root, stage, output);
    const signature = await writeSignature(stage, key ? { key: key.pair } : {});
    const file = outputFile(options.out, manifest.id, manifest.version);
    const packed = await packFolder(stage, file);
    const files = [...signature.files.map((f) => f.path), 'SIGNATURE'];
    const unpacked = signature.files.reduce((sum, f) => sum + f.size, 0);
    output.out(`${shown(file)}`);
    output.info(`  ${manifest.id} ${manifest.version}: ${files.length} files (SIGNATURE included), ${formatSize(unpacked)} unpacked, ${formatSize(packed.size)} packed`);
    output.info(`  sha256 ${packed.sha256}`);
    output.info(key ? `  signed by ${key.pair.publisher} (key ${key.pair.keyId})` : '  unsigned (pass --key <key pair file> to sign; a core installs it only when an administrator allows it)');
    return { id: manifest.id, version: manifest.version, file, sha256: packed.sha256, size: packed.size, files, signature };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}
