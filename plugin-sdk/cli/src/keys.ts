/**
 * Signing keys: `aiplat-plugin keygen`, and reading key pair and trusted key files.
 */
import path from 'node:path';
import { generateKeyPair, parsePublicKey, publicKeyOf, type KeyPair, type PublicKey } from '@aiplat/plugin-sdk/package';
import { CliError, consoleOutput, readJson, writePrivateFile, type Output } from './util.js';

/** The key file `keygen` writes when no --out is given. */
export const DEFAULT_KEY_FILE = 'aiplat-signing-key.json';
/** A key pair file named by the environment instead of --key. */
export const KEY_ENV = 'AIPLAT_SIGNING_KEY';

export interface KeygenOptions {
  publisher: string;
  out?: string;
  force?: boolean;
  output?: Output;
}

/** `aiplat-plugin keygen`: write a new key pair (0600) and print its public half. */
export function keygen(options: KeygenOptions): { file: string; publicKey: PublicKey } {
  const output = options.output ?? consoleOutput;
  let pair: KeyPair;
  try {
    pair = generateKeyPair(options.publisher);
  } catch (error) {
    throw new CliError(`--publisher: ${(error as Error).message}`, 2);
  }
  const file = path.resolve(options.out ?? DEFAULT_KEY_FILE);
  writePrivateFile(file, `${JSON.stringify(pair, null, 2)}\n`, options.force === true);
  const publicKey = publicKeyOf(pair);
  output.info(`wrote the key pair of ${pair.publisher} (key ${pair.keyId}) to ${file} (mode 0600): keep it secret and out of version control`);
  output.info("its public key, for a core's trusted keys file (AIPLAT_TRUSTED_KEYS) and the registry's publishers:");
  output.out(JSON.stringify(publicKey, null, 2));
  return { file, publicKey };
}

/** Read a key pair file (`keygen`'s output); the errors name the file. */
export function readKeyPair(file: string): KeyPair {
  const raw = readJson<Record<string, unknown>>(file, 'the key file');
  let publicKey: PublicKey;
  try {
    publicKey = parsePublicKey(raw, file);
  } catch (error) {
    throw new CliError((error as Error).message);
  }
  if (typeof raw.privateKey !== 'string' || !raw.privateKey.includes('PRIVATE KEY')) {
    throw new CliError(`${file} holds no private key: sign with the key pair file aiplat-plugin keygen wrote, not its public half`);
  }
  if (typeof raw.publisher !== 'string') throw new CliError(`${file}: "publisher" is missing`);
  return { ...publicKey, publisher: raw.publisher, privateKey: raw.privateKey };
}

/** The key pair named by --key, else by AIPLAT_SIGNING_KEY, else none. */
export function keyFromOptions(key: string | undefined): { file: string; pair: KeyPair } | undefined {
  const file = key ?? process.env[KEY_ENV];
  if (!file) return undefined;
  return { file, pair: readKeyPair(path.resolve(file)) };
}

/**
 * Read a trusted keys file: an array of public keys, `{ "keys": [...] }`, or a single key (a key
 * pair file is accepted too; only its public half is used).
 */
export function readTrustedKeys(file: string): PublicKey[] {
  const raw = readJson<unknown>(file, 'the trusted keys file');
  const list = Array.isArray(raw) ? raw : raw && typeof raw === 'object' && Array.isArray((raw as { keys?: unknown }).keys) ? (raw as { keys: unknown[] }).keys : [raw];
  return list.map((entry, i) => {
    try {
      return parsePublicKey(entry, `${file}${list.length > 1 || Array.isArray(raw) ? ` (key ${i + 1})` : ''}`);
    } catch (error) {
      throw new CliError((error as Error).message);
    }
  });
}
