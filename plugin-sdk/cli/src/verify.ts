/**
 * `aiplat-plugin sign` and `aiplat-plugin verify`.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { readPackage, signPackageFile, verifyPackage, type PackageContents, type PublicKey, type Verification } from '@aiplat/plugin-sdk/package';
import { readKeyPair, readTrustedKeys } from './keys.js';
import { CliError, consoleOutput, formatSize, shown, type Output } from './util.js';

function requireFile(file: string): string {
  const resolved = path.resolve(file);
  if (!existsSync(resolved)) throw new CliError(`${file} does not exist`);
  return resolved;
}

/** Read a package; a file that is no package at all is a failure of its own (`invalid`). */
async function read(file: string): Promise<PackageContents> {
  try {
    return await readPackage(requireFile(file));
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(`invalid: ${file} cannot be read as a plugin package: ${(error as Error).message}`);
  }
}

export interface SignOptions {
  key: string;
  out?: string;
  output?: Output;
}

/** `aiplat-plugin sign <file.tgz> --key key.json [--out file]`: a new SIGNATURE, signed, in place or to --out. */
export async function signPackage(file: string, options: SignOptions): Promise<{ file: string; sha256: string; size: number }> {
  const output = options.output ?? consoleOutput;
  const source = requireFile(file);
  const key = readKeyPair(path.resolve(options.key));
  const out = path.resolve(options.out ?? source);
  let result;
  try {
    result = await signPackageFile(source, key, out);
  } catch (error) {
    throw new CliError(`cannot sign ${file}: ${(error as Error).message}`);
  }
  output.out(shown(out));
  output.info(`  ${result.signature.id} ${result.signature.version} signed by ${key.publisher} (key ${key.keyId})`);
  output.info(`  sha256 ${result.sha256}, ${formatSize(result.size)}`);
  return { file: out, sha256: result.sha256, size: result.size };
}

export interface VerifyOptions {
  /** A trusted keys file. */
  trusted?: string;
  /** Accept `unsigned` and `untrusted` (exit 0). */
  allowUnsigned?: boolean;
  output?: Output;
}

/** `aiplat-plugin verify <file.tgz>`: prints the status and reason; `ok` says whether the exit code is 0. */
export async function verifyPackageFile(file: string, options: VerifyOptions = {}): Promise<Verification & { ok: boolean; contents: PackageContents }> {
  const output = options.output ?? consoleOutput;
  const trusted: PublicKey[] = options.trusted ? readTrustedKeys(path.resolve(options.trusted)) : [];
  const contents = await read(file);
  const verdict = verifyPackage(contents, trusted);
  const ok = verdict.status === 'signed' || (options.allowUnsigned === true && (verdict.status === 'unsigned' || verdict.status === 'untrusted'));
  output.out(`${verdict.status}: ${verdict.reason}`);
  output.info(`  ${String(contents.manifest.id)} ${String(contents.manifest.version)}: ${contents.files.length + (contents.signature ? 1 : 0)} files, ${formatSize(contents.size)}, sha256 ${contents.sha256}`);
  if (!options.trusted && verdict.status === 'untrusted') output.info('  (no --trusted keys file was given: pass the publisher\'s public key to check the signature)');
  return { ...verdict, ok, contents };
}
