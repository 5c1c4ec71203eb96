/**
 * A minimal npm registry for the `@aiplat` scope (the SDK, the test kit, the core, the CLI), so a
 * plugin created outside this repository installs them from the registry it publishes to:
 *
 *   .npmrc:  @aiplat:registry=http://<registry>/npm/
 *
 * It serves what `registry/scripts/pack-sdk.mjs` put in `<dataDir>/npm/`: the tarballs and
 * `packages.json`, `{ format: "aiplat-npm/1", packages: { <name>: { <version>: { name, version,
 * dependencies, …, dist: { file, shasum, integrity } } } } }`.
 *   GET /npm/@aiplat%2f<name>, GET /npm/@aiplat/<name>   the packument
 *   GET /npm/-/<file>.tgz                                the tarball
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Context } from 'koa';
import semver from 'semver';
import { RegistryError } from './errors.js';
import { sendFile } from './send-file.js';

export const NPM_SCOPE = '@aiplat';
export const NPM_PACKAGES_FORMAT = 'aiplat-npm/1';

export interface NpmVersionRecord {
  name: string;
  version: string;
  description?: string;
  license?: string;
  type?: string;
  main?: string;
  exports?: unknown;
  bin?: Record<string, string> | string;
  engines?: Record<string, string>;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  dist: { file: string; shasum: string; integrity: string; fileCount?: number; unpackedSize?: number };
  packedAt?: string;
}

export interface NpmPackages {
  format: typeof NPM_PACKAGES_FORMAT;
  packages: Record<string, Record<string, NpmVersionRecord>>;
}

const TARBALL_RE = /^[a-z0-9][a-z0-9._-]*\.tgz$/;
const NAME_RE = /^[a-z0-9][a-z0-9._-]*$/;

/** Reads `<dataDir>/npm/packages.json`, again whenever it changes. */
export class NpmScope {
  private cache: { state: string; packages: NpmPackages } | undefined;

  constructor(private readonly dataDir: string) {}

  get dir(): string {
    return path.join(this.dataDir, 'npm');
  }

  private async packages(): Promise<NpmPackages> {
    const file = path.join(this.dir, 'packages.json');
    const s = await stat(file).catch(() => undefined);
    if (!s) return { format: NPM_PACKAGES_FORMAT, packages: {} };
    const state = `${s.ino}:${s.size}:${s.mtimeMs}`;
    if (this.cache?.state === state) return this.cache.packages;
    const parsed = JSON.parse(await readFile(file, 'utf8')) as NpmPackages;
    if (parsed?.format !== NPM_PACKAGES_FORMAT || typeof parsed.packages !== 'object') {
      throw new Error(`${file} is not an ${NPM_PACKAGES_FORMAT} document: run registry/scripts/pack-sdk.mjs again`);
    }
    this.cache = { state, packages: parsed };
    return parsed;
  }

  /** Handle a request under /npm/ (the path given without the /npm prefix, still URL-encoded). */
  async handle(ctx: Context, rest: string, baseUrl: string): Promise<void> {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      throw new RegistryError('bad_request', `The npm endpoint is read-only: ${ctx.method} is not supported (publish the @aiplat packages with registry/scripts/pack-sdk.mjs).`);
    }
    const tarball = /^\/-\/([^/]+)$/.exec(rest);
    if (tarball) return this.sendTarball(ctx, decodeURIComponent(tarball[1]!));
    const m = /^\/(@[^/%]+)(?:%2[fF]|\/)([^/]+)\/?$/.exec(rest);
    if (!m) {
      throw new RegistryError('not_found', `Nothing is at ${ctx.path}. This npm endpoint serves ${NPM_SCOPE}/<name> packuments and /npm/-/<file>.tgz tarballs.`);
    }
    const scope = decodeURIComponent(m[1]!);
    const bare = decodeURIComponent(m[2]!);
    if (scope !== NPM_SCOPE || !NAME_RE.test(bare)) {
      throw new RegistryError(
        'not_found',
        `This registry serves only the ${NPM_SCOPE} scope, not ${scope}/${bare}. Set "${NPM_SCOPE}:registry=${baseUrl}/npm/" in .npmrc so that other packages still come from the npm registry.`,
      );
    }
    const name = `${scope}/${bare}`;
    const versions = (await this.packages()).packages[name];
    if (!versions || Object.keys(versions).length === 0) {
      throw new RegistryError('not_found', `Package ${name} is not on this registry. An administrator adds the ${NPM_SCOPE} packages with \`node registry/scripts/pack-sdk.mjs\`.`, { name });
    }
    ctx.set('Cache-Control', 'no-cache');
    ctx.type = 'application/json';
    ctx.body = packument(name, versions, `${baseUrl}/npm/-/`);
  }

  private async sendTarball(ctx: Context, file: string): Promise<void> {
    const known = TARBALL_RE.test(file) && Object.values((await this.packages()).packages).some((vs) => Object.values(vs).some((v) => v.dist.file === file));
    if (!known) throw new RegistryError('not_found', `Tarball ${file} is not on this registry.`, { file });
    await sendFile(ctx, path.join(this.dir, file), {
      type: 'application/octet-stream',
      cacheControl: 'public, max-age=31536000, immutable',
      notFound: () => new RegistryError('not_found', `Tarball ${file} is listed in npm/packages.json but missing from the data folder: run registry/scripts/pack-sdk.mjs again.`, { file }),
    });
  }
}

/** The npm packument of one package. */
export function packument(name: string, versions: Record<string, NpmVersionRecord>, tarballBase: string): Record<string, unknown> {
  const list = Object.keys(versions).filter((v) => semver.valid(v)).sort(semver.compare);
  const releases = list.filter((v) => semver.prerelease(v) === null);
  const latest = releases.at(-1) ?? list.at(-1)!;
  const time: Record<string, string> = {};
  const out: Record<string, unknown> = {};
  for (const v of list) {
    const r = versions[v]!;
    const { dist, packedAt, ...rest } = r;
    out[v] = {
      ...rest,
      name,
      version: v,
      _id: `${name}@${v}`,
      dist: {
        tarball: `${tarballBase}${dist.file}`,
        shasum: dist.shasum,
        integrity: dist.integrity,
        ...(dist.fileCount !== undefined ? { fileCount: dist.fileCount } : {}),
        ...(dist.unpackedSize !== undefined ? { unpackedSize: dist.unpackedSize } : {}),
      },
    };
    if (packedAt) time[v] = packedAt;
  }
  return { _id: name, name, 'dist-tags': { latest }, versions: out, ...(Object.keys(time).length > 0 ? { time } : {}) };
}
