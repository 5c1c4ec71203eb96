/**
 * Checking an uploaded package before it is committed: it must read as a package (safe entries,
 * limits), carry a valid manifest and a SIGNATURE whose checksums match; a signature is verified
 * against the publisher's own keys.
 */
import { rm } from 'node:fs/promises';
import semver from 'semver';
import type { PluginManifest } from '@aiplat/plugin-sdk';
import { PackageError, manifestProblems, readPackage, verifyPackage, type PackageContents, type Verification } from '@aiplat/plugin-sdk/package';
import type { IndexEntry, IndexVersion } from '@aiplat/plugin-sdk/package';
import { RegistryError } from './errors.js';
import type { Publisher } from './publishers.js';
import type { RegistryStore } from './store.js';


/** The manifest problems a person must fix, or an empty list. */
export function checkManifest(manifest: Record<string, unknown>, files: PackageContents['files']): string[] {
  const schemaProblems = manifestProblems(manifest);
  if (schemaProblems.length > 0) return schemaProblems;
  const m = manifest as unknown as PluginManifest;
  const problems: string[] = [];
  if (!semver.validRange(m.engines.aiplat)) problems.push(`engines.aiplat: "${m.engines.aiplat}" is not a semver range (such as ^1.0.0)`);
  for (const [field, value] of Object.entries(m.dependencies ?? {})) {
    if (!semver.validRange(value)) problems.push(`dependencies.${field}: "${value}" is not a semver range`);
  }
  for (const [field, value] of Object.entries(m.optionalDependencies ?? {})) {
    if (!semver.validRange(value)) problems.push(`optionalDependencies.${field}: "${value}" is not a semver range`);
  }
  const paths = new Set(files.map((f) => f.path));
  const inside = (p: string) => paths.has(p.replace(/^\.\//, ''));
  if (m.backend && !inside(m.backend.entry)) problems.push(`backend.entry: "${m.backend.entry}" is not a file in the package`);
  if (m.web && !inside(m.web.remoteEntry)) problems.push(`web.remoteEntry: "${m.web.remoteEntry}" is not a file in the package`);
  return problems;
}

export interface PublishResult {
  entry: IndexEntry;
  version: IndexVersion;
  verification: Verification;
}

/**
 * Check the uploaded `.tgz` at `file` (on the data folder's file system) and commit it for
 * `publisher`. The file is moved into the data folder or removed.
 */
export async function publishPackage(store: RegistryStore, file: string, publisher: Publisher): Promise<PublishResult> {
  try {
    let pkg: PackageContents;
    try {
      pkg = await readPackage(file);
    } catch (error) {
      if (error instanceof PackageError) {
        throw new RegistryError('package_invalid', `The package cannot be accepted: ${error.message}.`, { reason: error.code, ...(error.details ?? {}) });
      }
      throw error;
    }
    const problems = checkManifest(pkg.manifest, pkg.files);
    if (problems.length > 0) {
      throw new RegistryError('manifest_invalid', `aiplat-plugin.json in the package is not a valid plugin manifest: ${problems.join('; ')}.`, { problems });
    }
    const manifest = pkg.manifest as unknown as PluginManifest;
    if (!pkg.signature) {
      throw new RegistryError(
        'signature_missing',
        'The package has no SIGNATURE file. Pack it with `aiplat-plugin pack` (add --key to sign it), which lists every file with its checksum.',
        { id: manifest.id, version: manifest.version },
      );
    }
    const verification = verifyPackage(pkg, publisher.keys);
    if (verification.status === 'modified') {
      throw new RegistryError('package_modified', `The package does not match its SIGNATURE: ${verification.reason}. Pack it again from the plugin folder.`, {
        id: manifest.id,
        version: manifest.version,
        reason: verification.reason,
      });
    }
    const signed = verification.status === 'signed';
    const { entry, version } = await store.serial(() =>
      store.addVersion({
        manifest,
        packageFile: file,
        sha256: pkg.sha256,
        size: pkg.size,
        readme: pkg.readme,
        changelog: pkg.changelog,
        publisher: publisher.name,
        keyId: verification.keyId ?? pkg.signature?.keyId ?? null,
        signed,
      }),
    );
    return { entry, version, verification };
  } finally {
    // Gone already when it was moved into place.
    await rm(file, { force: true });
  }
}
