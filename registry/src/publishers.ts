/**
 * Publisher accounts: a name, the SHA-256 of its token (tokens are never stored in clear) and the
 * public keys its packages are signed with. Kept in a JSON file:
 *
 *   [{ "name": "acme", "tokenSha256": "<hex>", "keys": [{ keyId, publisher, algorithm, publicKey }] }]
 *
 * The file is re-read when it changes, so `add-publisher` takes effect without a restart.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parsePublicKey, type PublicKey } from '@aiplat/plugin-sdk/package';
import type { Logger } from '@aiplat/plugin-sdk';
import { RegistryError } from './errors.js';

export interface Publisher {
  name: string;
  /** Hex SHA-256 of the publisher's token. */
  tokenSha256: string;
  keys: PublicKey[];
}

export const PUBLISHER_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const TOKEN_PREFIX = 'aiplat_pub_';

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function newToken(): string {
  return `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
}

/** Check a publishers document; throws an Error listing every problem, each naming the entry and field. */
export function parsePublishers(value: unknown, where: string): Publisher[] {
  const problems: string[] = [];
  if (!Array.isArray(value)) throw new Error(`${where} must hold a JSON array of publishers: [{ "name", "tokenSha256", "keys": [] }]`);
  const names = new Set<string>();
  const tokens = new Set<string>();
  const out: Publisher[] = [];
  value.forEach((item: unknown, i) => {
    const p = item as Partial<Publisher> | null;
    const at = `${where}[${i}]`;
    if (!p || typeof p !== 'object' || Array.isArray(p)) {
      problems.push(`${at} must be an object { "name", "tokenSha256", "keys" }`);
      return;
    }
    const name = typeof p.name === 'string' ? p.name : '';
    if (!PUBLISHER_NAME_PATTERN.test(name)) problems.push(`${at}.name must be 1–64 letters, digits, ".", "_" or "-" (starting with a letter or digit), not ${JSON.stringify(p.name)}`);
    else if (names.has(name)) problems.push(`${at}.name "${name}" appears twice`);
    names.add(name);
    const tokenSha256 = typeof p.tokenSha256 === 'string' ? p.tokenSha256.toLowerCase() : '';
    if (!/^[0-9a-f]{64}$/.test(tokenSha256)) {
      problems.push(`${at}.tokenSha256 must be the hex SHA-256 of the publisher's token (64 hex digits; the token itself is never stored)`);
    } else if (tokens.has(tokenSha256)) {
      problems.push(`${at}.tokenSha256 is the same as another publisher's: each publisher needs its own token`);
    }
    tokens.add(tokenSha256);
    const keys: PublicKey[] = [];
    if (p.keys !== undefined && !Array.isArray(p.keys)) problems.push(`${at}.keys must be an array of public keys`);
    for (const [k, raw] of (Array.isArray(p.keys) ? p.keys : []).entries()) {
      try {
        const key = parsePublicKey(raw, `${at}.keys[${k}]`);
        const claimed = (raw as { publisher?: unknown }).publisher;
        if (claimed !== undefined && claimed !== name) problems.push(`${at}.keys[${k}] belongs to publisher "${String(claimed)}", not "${name}"`);
        keys.push({ ...key, publisher: name });
      } catch (error) {
        problems.push((error as Error).message);
      }
    }
    out.push({ name, tokenSha256, keys });
  });
  if (problems.length > 0) throw new Error(`${where} is not valid:\n  - ${problems.join('\n  - ')}`);
  return out;
}

export async function readPublishersFile(file: string): Promise<Publisher[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new Error(`the publishers file ${file} cannot be read: ${(error as Error).message}`, { cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`the publishers file ${file} is not JSON: ${(error as Error).message}`, { cause: error });
  }
  return parsePublishers(parsed, file);
}

export async function writePublishersFile(file: string, publishers: Publisher[]): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(publishers, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, file);
}

/** Add a publisher to the file; returns its new token (shown once). */
export async function addPublisher(file: string, name: string, keys: PublicKey[] = []): Promise<string> {
  if (!PUBLISHER_NAME_PATTERN.test(name)) throw new Error(`publisher name must be 1–64 letters, digits, ".", "_" or "-", not "${name}"`);
  const publishers = await readPublishersFile(file);
  if (publishers.some((p) => p.name === name)) throw new Error(`publisher "${name}" already exists in ${file}; use rotate-token to give it a new token`);
  const token = newToken();
  publishers.push({ name, tokenSha256: hashToken(token), keys: keys.map((k) => ({ ...k, publisher: name })) });
  await writePublishersFile(file, parsePublishers(publishers, file));
  return token;
}

/** Give a publisher a new token (the old one stops working); returns it. */
export async function rotateToken(file: string, name: string): Promise<string> {
  const publishers = await readPublishersFile(file);
  const p = publishers.find((x) => x.name === name);
  if (!p) throw new Error(`publisher "${name}" is not in ${file}`);
  const token = newToken();
  p.tokenSha256 = hashToken(token);
  await writePublishersFile(file, publishers);
  return token;
}

/** Trust one more signing key for a publisher. */
export async function addKey(file: string, name: string, key: PublicKey): Promise<void> {
  const publishers = await readPublishersFile(file);
  const p = publishers.find((x) => x.name === name);
  if (!p) throw new Error(`publisher "${name}" is not in ${file}`);
  if (p.keys.some((k) => k.keyId === key.keyId)) throw new Error(`publisher "${name}" already has key ${key.keyId}`);
  p.keys.push({ ...key, publisher: name });
  await writePublishersFile(file, parsePublishers(publishers, file));
}

/** The publishers the registry authenticates against: a fixed list, or a file re-read when it changes. */
export class PublisherDirectory {
  private list: Publisher[] = [];
  private fileState = '';

  private constructor(
    private readonly file: string | undefined,
    private readonly logger: Logger,
  ) {}

  static async open(source: string | Publisher[], logger: Logger): Promise<PublisherDirectory> {
    if (typeof source !== 'string') {
      const dir = new PublisherDirectory(undefined, logger);
      dir.list = parsePublishers(source, 'publishers');
      return dir;
    }
    const dir = new PublisherDirectory(source, logger);
    // At start an unreadable or invalid file stops the registry (the error says why).
    dir.list = await readPublishersFile(source);
    dir.fileState = await fileStateOf(source);
    if (dir.fileState === 'absent') logger.warn({ file: source }, 'no publishers file yet: nobody can publish until one is added (npm run registry -- add-publisher <name>)');
    return dir;
  }

  get publishers(): readonly Publisher[] {
    return this.list;
  }

  private async refresh(): Promise<void> {
    if (!this.file) return;
    const state = await fileStateOf(this.file);
    if (state === this.fileState) return;
    try {
      this.list = await readPublishersFile(this.file);
      this.fileState = state;
      this.logger.info({ file: this.file, publishers: this.list.length }, 'publishers file reloaded');
    } catch (error) {
      // Keep the last good list: a half-edited file must not lock everyone out.
      this.logger.error({ err: error, file: this.file }, 'publishers file changed but is not valid; still using the previous list');
    }
  }

  /** The publisher an `Authorization: Bearer <token>` header belongs to; throws 401 otherwise. */
  async authenticate(authorization: string | undefined): Promise<Publisher> {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) {
      throw new RegistryError('unauthenticated', 'Publishing needs a publisher token: send the header "Authorization: Bearer <token>" (an administrator creates one with `npm run registry -- add-publisher <name>`).');
    }
    await this.refresh();
    const digest = Buffer.from(hashToken(m[1]!), 'hex');
    let found: Publisher | undefined;
    for (const p of this.list) {
      // Compare every entry in constant time, so timing says nothing about which hash is close.
      if (timingSafeEqual(digest, Buffer.from(p.tokenSha256, 'hex')) && !found) found = p;
    }
    if (!found) {
      throw new RegistryError('unauthenticated', this.list.length === 0
        ? 'This registry has no publishers yet, so nobody can publish: an administrator adds one with `npm run registry -- add-publisher <name>`.'
        : 'The token matches no publisher of this registry. Check the token, or ask the administrator for a new one (`npm run registry -- rotate-token <name>`).');
    }
    return found;
  }
}

/** What changes when the file is rewritten (it is replaced by a rename: a new inode). */
async function fileStateOf(file: string): Promise<string> {
  try {
    const s = await stat(file);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return 'absent';
  }
}
