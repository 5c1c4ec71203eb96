/**
 * `aiplat-plugin create <name>`: a new plugin folder from templates/plugin (files ending in
 * `.tmpl`, `{{key}}` replaced; `__name__` in a file name becomes the plugin id).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PLUGIN_API_VERSION, PLUGIN_ID_PATTERN } from '@aiplat/plugin-sdk';
import { CliError, consoleOutput, shown, type Output } from './util.js';

const require = createRequire(import.meta.url);
export const TEMPLATE_DIR = path.resolve(import.meta.dirname, '..', 'templates', 'plugin');

interface PackageJson {
  version: string;
  peerDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

/** This CLI's package.json. */
export function cliPackage(): PackageJson {
  return JSON.parse(readFileSync(path.resolve(import.meta.dirname, '..', 'package.json'), 'utf8')) as PackageJson;
}

/** The SDK's package.json (its peer dependencies are the UI build's). */
function sdkPackage(): PackageJson {
  const entry = require.resolve('@aiplat/plugin-sdk');
  return JSON.parse(readFileSync(path.resolve(path.dirname(entry), '..', 'package.json'), 'utf8')) as PackageJson;
}

/** "my-plugin" → "My plugin". */
function titleOf(id: string): string {
  const words = id.split('-');
  return [words[0]!.charAt(0).toUpperCase() + words[0]!.slice(1), ...words.slice(1)].join(' ');
}

export interface CreateOptions {
  /** The folder to create (default: ./<name>). */
  dir?: string;
  /** A registry URL: `.npmrc` takes the @aiplat scope from `<registry>/npm/` and `npm run publish` goes there. */
  registry?: string;
  output?: Output;
}

/** The values of the `{{key}}` placeholders. */
export function templateValues(name: string, registry: string | undefined): Record<string, string> {
  const cli = cliPackage();
  const sdk = sdkPackage();
  const values: Record<string, string> = {
    name,
    name_underscored: name.replace(/-/g, '_'),
    title: titleOf(name),
    engines: `^${PLUGIN_API_VERSION}`,
    aiplatRange: `^${cli.version}`,
    registry: registry ?? '',
    publishRegistry: registry ? ` --registry ${registry}` : '',
  };
  for (const [pkg, range] of Object.entries(sdk.peerDependencies ?? {})) values[`peer:${pkg}`] = range;
  for (const [pkg, range] of Object.entries(cli.devDependencies ?? {})) values[`dev:${pkg}`] = range;
  return values;
}

export function render(text: string, values: Record<string, string>, file: string): string {
  return text.replace(/\{\{([A-Za-z0-9_:@/.-]+)\}\}/g, (_match, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`template ${file}: unknown placeholder {{${key}}}`);
    return value;
  });
}

/** Template file path → the path it is written to, or undefined to skip it. */
function targetName(rel: string, name: string, registry: string | undefined): string | undefined {
  let out = rel.replace(/\.tmpl$/, '').replace(/__name__/g, name);
  const base = path.posix.basename(out);
  // npm leaves dotfiles such as .gitignore and .npmrc out of published packages: the templates
  // carry them as _gitignore and _npmrc.
  if (base === '_npmrc' && !registry) return undefined;
  if (base === '_gitignore' || base === '_npmrc') out = path.posix.join(path.posix.dirname(out), `.${base.slice(1)}`);
  return out;
}

function templateFiles(dir: string, rel = ''): string[] {
  const found: string[] = [];
  for (const name of readdirSync(path.join(dir, rel)).sort()) {
    const child = rel ? `${rel}/${name}` : name;
    if (statSync(path.join(dir, child)).isDirectory()) found.push(...templateFiles(dir, child));
    else found.push(child);
  }
  return found;
}

/** `aiplat-plugin create <name>`. */
export function createPlugin(name: string, options: CreateOptions = {}): { dir: string; files: string[] } {
  const output = options.output ?? consoleOutput;
  if (!new RegExp(PLUGIN_ID_PATTERN).test(name)) {
    throw new CliError(`"${name}" is not a plugin id: 3–40 lowercase letters, digits or "-", starting with a letter and not ending with "-" (e.g. my-plugin)`, 2);
  }
  let registry = options.registry?.replace(/\/+$/, '');
  if (registry !== undefined) {
    try {
      const url = new URL(registry);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
    } catch {
      throw new CliError(`--registry "${options.registry}" is not an http or https URL`, 2);
    }
    if (registry === '') registry = undefined;
  }
  const dir = path.resolve(options.dir ?? name);
  if (existsSync(dir) && (!statSync(dir).isDirectory() || readdirSync(dir).length > 0)) {
    throw new CliError(`${dir} already exists and is not empty: pick another --dir`);
  }
  const values = templateValues(name, registry);
  const files: string[] = [];
  for (const rel of templateFiles(TEMPLATE_DIR)) {
    const target = targetName(rel, name, registry);
    if (!target) continue;
    const text = render(readFileSync(path.join(TEMPLATE_DIR, rel), 'utf8'), values, rel);
    const full = path.join(dir, target);
    mkdirSync(path.dirname(full), { recursive: true });
    writeFileSync(full, text);
    files.push(target);
  }
  output.info(`created the plugin ${name} in ${shown(dir)}:`);
  for (const file of files.sort()) output.info(`  ${file}`);
  output.info('');
  if (!registry) {
    output.info('note: npm install takes the @aiplat packages from an aiplat registry: add "@aiplat:registry=<registry>/npm/"');
    output.info('      to .npmrc (aiplat-plugin create --registry <url> writes it), or install them from files');
    output.info('');
  }
  output.info('next:');
  output.info(`  cd ${shown(dir)}`);
  output.info('  npm install');
  output.info('  npm test          # a real core with the plugin, checked through its routes');
  output.info('  npm run dev       # a local core on http://localhost:8080, restarted when src/ changes');
  output.info('  npm run pack      # the package: <id>-<version>.tgz');
  output.out(dir);
  return { dir, files };
}
