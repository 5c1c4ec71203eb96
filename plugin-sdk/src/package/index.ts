/**
 * `@aiplat/plugin-sdk/package` — the plugin package format (docs/adr/0010): SIGNATURE documents,
 * ed25519 keys, deterministic `.tgz` packing, and reading or extracting a package safely (only
 * files and folders, no `..`, no links, size and count limits, no copies of the host's libraries).
 * Node only: the CLI, the registry and the core use it; the SDK's main entry does not import it.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip, constants as zlibConstants } from 'node:zlib';
import tar from 'tar-stream';

export * from './registry-index.js';
export { manifestProblems } from './manifest-check.js';

export const SIGNATURE_FILE = 'SIGNATURE';
export const PACKAGE_MANIFEST_FILE = 'aiplat-plugin.json';
export const SIGNATURE_FORMAT = 'aiplat-signature/1';
const PAYLOAD_HEADER = 'aiplat-plugin-package/1';

export interface PackageFile {
  /** `/`-separated, relative to the package root. */
  path: string;
  /** Hex SHA-256 of the content. */
  sha256: string;
  size: number;
}

export interface SignatureDocument {
  format: typeof SIGNATURE_FORMAT;
  id: string;
  version: string;
  /** Every file but SIGNATURE, sorted by path (byte order). */
  files: PackageFile[];
  algorithm?: 'ed25519';
  keyId?: string;
  publisher?: string;
  /** Base64 ed25519 signature over {@link signedPayload}. */
  signature?: string;
}

export interface PublicKey {
  keyId: string;
  publisher: string;
  algorithm: 'ed25519';
  /** Base64 of the raw 32-byte public key. */
  publicKey: string;
}

export interface KeyPair extends PublicKey {
  /** PKCS#8 PEM. */
  privateKey: string;
}

export interface PackageLimits {
  /** Most files (default 10,000). */
  maxFiles?: number;
  /** Most bytes unpacked (default 2 GiB). */
  maxBytes?: number;
}

export interface PackageContents {
  /** The parsed `aiplat-plugin.json` (not yet checked against the manifest schema). */
  manifest: Record<string, unknown>;
  signature: SignatureDocument | undefined;
  /** Every file but SIGNATURE, sorted by path. */
  files: PackageFile[];
  readme?: string;
  changelog?: string;
  /** Hex SHA-256 of the `.tgz` itself. */
  sha256: string;
  /** Bytes of the `.tgz`. */
  size: number;
}

export type VerificationStatus = 'signed' | 'untrusted' | 'unsigned' | 'modified';

export interface Verification {
  status: VerificationStatus;
  keyId?: string;
  publisher?: string;
  /** A sentence a person can act on. */
  reason: string;
}

export type PackageErrorCode = 'package_invalid' | 'package_unsafe' | 'package_too_large' | 'package_bundles_host_library';

/** Why a package cannot be read, packed or extracted. */
export class PackageError extends Error {
  constructor(
    readonly code: PackageErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'PackageError';
  }
}

const DEFAULT_LIMITS: Required<PackageLimits> = { maxFiles: 10_000, maxBytes: 2 * 1024 ** 3 };
/** Libraries the host provides; a package carrying its own copy is refused. */
export const HOST_LIBRARIES = ['@aiplat/plugin-sdk', 'vue', 'vue-router', 'pinia', 'vue-i18n', 'element-plus'] as const;
/** A bundled copy of the SDK's definePlugin carries this marker (plugin.ts). */
const SDK_MARKERS = ['Symbol.for("aiplat.plugin")', "Symbol.for('aiplat.plugin')"];
const SMALL_FILE_LIMIT = 4 * 1024 * 1024;

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

// --- keys -------------------------------------------------------------------------------------

/** The key id: the first 16 hex digits of the SHA-256 of the raw public key. */
export function keyIdOf(publicKeyBase64: string): string {
  return createHash('sha256').update(Buffer.from(publicKeyBase64, 'base64')).digest('hex').slice(0, 16);
}

export function generateKeyPair(publisher: string): KeyPair {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(publisher)) {
    throw new PackageError('package_invalid', `publisher "${publisher}" must be 1–64 letters, digits, ".", "_" or "-"`);
  }
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url').toString('base64');
  return {
    keyId: keyIdOf(raw),
    publisher,
    algorithm: 'ed25519',
    publicKey: raw,
    privateKey: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
}

export function publicKeyOf(pair: KeyPair | PublicKey): PublicKey {
  return { keyId: pair.keyId, publisher: pair.publisher, algorithm: 'ed25519', publicKey: pair.publicKey };
}

/** Check the shape of a public key (or key pair) read from a file; the message names what is wrong. */
export function parsePublicKey(value: unknown, where = 'key'): PublicKey {
  const v = value as Partial<PublicKey> | null;
  if (!v || typeof v !== 'object') throw new PackageError('package_invalid', `${where}: expected an object { keyId, publisher, algorithm, publicKey }`);
  if (v.algorithm !== undefined && v.algorithm !== 'ed25519') throw new PackageError('package_invalid', `${where}: algorithm must be "ed25519"`);
  if (typeof v.publicKey !== 'string' || Buffer.from(v.publicKey, 'base64').length !== 32) {
    throw new PackageError('package_invalid', `${where}: publicKey must be the base64 of a 32-byte ed25519 public key`);
  }
  const keyId = keyIdOf(v.publicKey);
  if (v.keyId !== undefined && v.keyId !== keyId) throw new PackageError('package_invalid', `${where}: keyId "${String(v.keyId)}" does not belong to its publicKey (expected ${keyId})`);
  return { keyId, publisher: typeof v.publisher === 'string' ? v.publisher : 'unknown', algorithm: 'ed25519', publicKey: v.publicKey };
}

// --- signatures -------------------------------------------------------------------------------

/** The bytes a SIGNATURE signs. */
export function signedPayload(id: string, version: string, files: PackageFile[]): Buffer {
  const lines = [PAYLOAD_HEADER, id, version, ...files.map((f) => `${f.sha256}  ${f.path}`)];
  return Buffer.from(`${lines.join('\n')}\n`, 'utf8');
}

/** Every file of a folder but SIGNATURE, sorted; refuses links and node_modules. */
export async function hashFolder(dir: string): Promise<PackageFile[]> {
  const files: PackageFile[] = [];
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(path.join(dir, rel))).sort(byteOrder);
    for (const name of names) {
      const relPath = rel ? `${rel}/${name}` : name;
      checkEntryName(relPath);
      const full = path.join(dir, relPath);
      const stat = await lstat(full);
      if (stat.isSymbolicLink()) throw new PackageError('package_unsafe', `${relPath} is a link: packages may hold only files and folders`, { path: relPath });
      if (stat.isDirectory()) {
        await walk(relPath);
        continue;
      }
      if (!stat.isFile()) throw new PackageError('package_unsafe', `${relPath} is not a regular file`, { path: relPath });
      if (relPath === SIGNATURE_FILE) continue;
      const hash = createHash('sha256');
      await pipeline(createReadStream(full), new HostLibraryScan(relPath), hash);
      files.push({ path: relPath, sha256: hash.digest('hex'), size: stat.size });
    }
  };
  await walk('');
  return files.sort((a, b) => byteOrder(a.path, b.path));
}

async function readManifestIdentity(dir: string): Promise<{ id: string; version: string }> {
  let manifest: { id?: unknown; version?: unknown };
  try {
    manifest = JSON.parse(await readFile(path.join(dir, PACKAGE_MANIFEST_FILE), 'utf8')) as typeof manifest;
  } catch (error) {
    throw new PackageError('package_invalid', `${PACKAGE_MANIFEST_FILE} cannot be read: ${(error as Error).message}`);
  }
  if (typeof manifest.id !== 'string' || typeof manifest.version !== 'string') {
    throw new PackageError('package_invalid', `${PACKAGE_MANIFEST_FILE} needs an "id" and a "version"`);
  }
  return { id: manifest.id, version: manifest.version };
}

/** Sign a payload with a key pair's private key (base64). */
function signPayload(payload: Buffer, key: KeyPair): string {
  const privateKey = createPrivateKey(key.privateKey);
  const derived = keyIdOf(Buffer.from(createPublicKey(privateKey).export({ format: 'jwk' }).x as string, 'base64url').toString('base64'));
  if (derived !== key.keyId) throw new PackageError('package_invalid', `the key file's keyId ${key.keyId} does not match its private key (${derived})`);
  return sign(null, payload, privateKey).toString('base64');
}

/** Write `<dir>/SIGNATURE` for the folder's files; signed when a key is given. */
export async function writeSignature(dir: string, options: { key?: KeyPair } = {}): Promise<SignatureDocument> {
  const { id, version } = await readManifestIdentity(dir);
  const files = await hashFolder(dir);
  const doc: SignatureDocument = { format: SIGNATURE_FORMAT, id, version, files };
  if (options.key) {
    doc.algorithm = 'ed25519';
    doc.keyId = options.key.keyId;
    doc.publisher = options.key.publisher;
    doc.signature = signPayload(signedPayload(id, version, files), options.key);
  }
  await writeFile(path.join(dir, SIGNATURE_FILE), `${JSON.stringify(doc, null, 2)}\n`);
  return doc;
}

function parseSignature(text: string): SignatureDocument {
  let doc: SignatureDocument;
  try {
    doc = JSON.parse(text) as SignatureDocument;
  } catch (error) {
    throw new PackageError('package_invalid', `SIGNATURE is not JSON: ${(error as Error).message}`);
  }
  const ok =
    doc &&
    doc.format === SIGNATURE_FORMAT &&
    typeof doc.id === 'string' &&
    typeof doc.version === 'string' &&
    Array.isArray(doc.files) &&
    doc.files.every((f) => f && typeof f.path === 'string' && typeof f.sha256 === 'string' && /^[0-9a-f]{64}$/.test(f.sha256) && Number.isInteger(f.size));
  if (!ok) throw new PackageError('package_invalid', `SIGNATURE is not an ${SIGNATURE_FORMAT} document (format, id, version, files[{ path, sha256, size }])`);
  return doc;
}

/**
 * Check a package against its SIGNATURE and the trusted keys: `signed` (a trusted key signed
 * exactly these files), `untrusted` (signed by a key not trusted here), `unsigned`, or `modified`
 * (a file added, missing or changed, or a signature that does not match).
 */
export function verifyPackage(pkg: Pick<PackageContents, 'manifest' | 'signature' | 'files'>, trusted: PublicKey[]): Verification {
  const sig = pkg.signature;
  if (!sig) return { status: 'unsigned', reason: 'the package has no SIGNATURE' };
  if (sig.id !== pkg.manifest.id || sig.version !== pkg.manifest.version) {
    return { status: 'modified', reason: `SIGNATURE is for ${sig.id}@${sig.version} but the manifest says ${String(pkg.manifest.id)}@${String(pkg.manifest.version)}` };
  }
  const listed = new Map(sig.files.map((f) => [f.path, f]));
  for (const file of pkg.files) {
    const entry = listed.get(file.path);
    if (!entry) return { status: 'modified', reason: `${file.path} is in the package but not in its SIGNATURE (a file was added)` };
    if (entry.sha256 !== file.sha256 || entry.size !== file.size) return { status: 'modified', reason: `${file.path} does not match its checksum in SIGNATURE (the file was changed)` };
    listed.delete(file.path);
  }
  const missing = [...listed.keys()];
  if (missing.length > 0) return { status: 'modified', reason: `${missing[0]} is listed in SIGNATURE but missing from the package` };
  if (!sig.signature) return { status: 'unsigned', reason: 'the package is not signed (its checksums match)' };
  const who = { keyId: sig.keyId, publisher: sig.publisher };
  const key = trusted.find((k) => k.keyId === sig.keyId);
  if (!key) return { status: 'untrusted', ...who, reason: `signed by ${sig.publisher ?? 'an unknown publisher'} with key ${sig.keyId ?? '(none)'}, which is not among the trusted keys` };
  const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(key.publicKey, 'base64').toString('base64url') }, format: 'jwk' });
  const sorted = [...sig.files].sort((a, b) => byteOrder(a.path, b.path));
  let valid: boolean;
  try {
    valid = verify(null, signedPayload(sig.id, sig.version, sorted), publicKey, Buffer.from(sig.signature, 'base64'));
  } catch {
    valid = false;
  }
  if (!valid) return { status: 'modified', ...who, reason: `the signature does not match the package's contents (key ${key.keyId})` };
  return { status: 'signed', keyId: key.keyId, publisher: key.publisher, reason: `signed by ${key.publisher} (key ${key.keyId})` };
}

// --- entry names and host libraries ---------------------------------------------------------

/** Refuse names that could land outside the package's folder or carry host libraries. */
function checkEntryName(name: string): void {
  if (name.length === 0 || name.length > 400) throw new PackageError('package_unsafe', `an entry name is empty or longer than 400 characters`);
  if (name.includes('\0') || name.includes('\\')) throw new PackageError('package_unsafe', `"${name}" holds a backslash or NUL character`, { path: name });
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) throw new PackageError('package_unsafe', `"${name}" is an absolute path`, { path: name });
  const segments = name.split('/');
  if (segments.some((s) => s === '..' || s === '.' || s === '')) throw new PackageError('package_unsafe', `"${name}" has a "..", "." or empty path segment`, { path: name });
  if (segments.includes('node_modules')) {
    const rest = segments.slice(segments.indexOf('node_modules') + 1);
    const pkg = rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1] ?? ''}` : rest[0];
    const host = HOST_LIBRARIES.find((lib) => lib === pkg);
    throw new PackageError(
      'package_bundles_host_library',
      host
        ? `${name}: the package carries its own copy of ${host}, which the host provides`
        : `${name}: packages may not hold node_modules; bundle the backend's dependencies (aiplat-plugin build does)`,
      { path: name },
    );
  }
}

/** Passes bytes through, refusing a JavaScript file that carries a copy of the SDK's definePlugin. */
class HostLibraryScan extends Transform {
  private tail = '';
  private readonly active: boolean;
  constructor(private readonly name: string) {
    super();
    this.active = /\.(m|c)?js$/.test(name);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.active) {
      const text = this.tail + chunk.toString('latin1');
      if (SDK_MARKERS.some((m) => text.includes(m))) {
        done(new PackageError('package_bundles_host_library', `${this.name} carries its own copy of @aiplat/plugin-sdk, which the host provides (keep it external when bundling)`, { path: this.name }));
        return;
      }
      this.tail = text.slice(-40);
    }
    done(null, chunk);
  }
}

// --- packing ----------------------------------------------------------------------------------

/**
 * A deterministic `.tgz` of a folder that holds SIGNATURE: entries at the root, the manifest
 * first, then by path; fixed times and owners. Written to a temporary file and renamed.
 */
export async function packFolder(dir: string, outFile: string): Promise<{ sha256: string; size: number }> {
  const sigPath = path.join(dir, SIGNATURE_FILE);
  try {
    await lstat(sigPath);
  } catch {
    throw new PackageError('package_invalid', `${dir} has no SIGNATURE: run writeSignature first`);
  }
  const files = await hashFolder(dir);
  const order = [PACKAGE_MANIFEST_FILE, ...files.map((f) => f.path).filter((p) => p !== PACKAGE_MANIFEST_FILE), SIGNATURE_FILE];
  const pack = tar.pack();
  const tmp = `${outFile}.${randomBytes(4).toString('hex')}.tmp`;
  const hash = createHash('sha256');
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  const writing = pipeline(pack, createGzip({ level: zlibConstants.Z_BEST_COMPRESSION }), counter, createWriteStream(tmp));
  try {
    for (const rel of order) {
      const full = path.join(dir, rel);
      const stat = await lstat(full);
      await new Promise<void>((resolve, reject) => {
        const entry = pack.entry({ name: rel, size: stat.size, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0, uname: '', gname: '', type: 'file' }, (error) => (error ? reject(error) : resolve()));
        pipeline(createReadStream(full), entry).catch(reject);
      });
    }
    pack.finalize();
    await writing;
    await rename(tmp, outFile);
  } catch (error) {
    pack.destroy();
    await writing.catch(() => undefined);
    await rm(tmp, { force: true });
    throw error;
  }
  return { sha256: hash.digest('hex'), size };
}

// --- reading and extracting ------------------------------------------------------------------

function toStream(source: string | Buffer | NodeJS.ReadableStream): Readable {
  if (typeof source === 'string') return createReadStream(source);
  if (Buffer.isBuffer(source)) return Readable.from([source]);
  return source as Readable;
}

async function scan(source: string | Buffer | NodeJS.ReadableStream, options: { limits?: PackageLimits }, target?: string): Promise<PackageContents> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const input = toStream(source);
  const tgzHash = createHash('sha256');
  let tgzSize = 0;
  const counter = new PassThrough();
  counter.on('data', (chunk: Buffer) => {
    tgzHash.update(chunk);
    tgzSize += chunk.length;
  });
  const extract = tar.extract();
  const files: PackageFile[] = [];
  const seen = new Set<string>();
  const small = new Map<string, Buffer>();
  let total = 0;
  const madeDirs = new Set<string>();
  const keepSmall = (name: string) => name === PACKAGE_MANIFEST_FILE || name === SIGNATURE_FILE || name === 'README.md' || name === 'CHANGELOG.md';

  const feeding = pipeline(input, counter, createGunzip(), extract);
  // The feeding side's failure (not gzip, truncated) surfaces through the loop below as well.
  feeding.catch(() => undefined);
  const consume = async (header: tar.Header, stream: Readable): Promise<void> => {
    const name = header.name.replace(/^\.\//, '').replace(/\/$/, '');
    if (header.type === 'directory') {
      if (name !== '' && name !== '.') checkEntryName(name);
      stream.resume();
      return;
    }
    if (header.type !== 'file' && header.type !== 'contiguous-file') {
      throw new PackageError('package_unsafe', `"${header.name}" is a ${header.type ?? 'special entry'}${header.linkname ? ` to ${header.linkname}` : ''}: packages may hold only files and folders`, { path: header.name });
    }
    checkEntryName(name);
    if (seen.has(name)) throw new PackageError('package_unsafe', `"${name}" appears twice in the package`, { path: name });
    seen.add(name);
    if (seen.size > limits.maxFiles) throw new PackageError('package_too_large', `the package holds more than ${limits.maxFiles} files`);
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        total += chunk.length;
        if (total > limits.maxBytes) {
          done(new PackageError('package_too_large', `the package unpacks to more than ${limits.maxBytes} bytes`));
          return;
        }
        hash.update(chunk);
        if (keepSmall(name)) {
          if (size > SMALL_FILE_LIMIT) {
            done(new PackageError('package_too_large', `${name} is larger than ${SMALL_FILE_LIMIT} bytes`));
            return;
          }
          chunks.push(chunk);
        }
        done(null, chunk);
      },
    });
    if (!target) {
      await pipeline(stream, new HostLibraryScan(name), meter, new PassThrough().resume());
    } else {
      const full = path.resolve(target, name);
      if (!full.startsWith(target + path.sep)) throw new PackageError('package_unsafe', `"${name}" would land outside the package folder`, { path: name });
      const parent = path.dirname(full);
      if (!madeDirs.has(parent)) {
        await mkdir(parent, { recursive: true, mode: 0o755 });
        madeDirs.add(parent);
      }
      await pipeline(stream, new HostLibraryScan(name), meter, createWriteStream(full, { flags: 'wx', mode: 0o644 }));
    }
    if (name !== SIGNATURE_FILE) files.push({ path: name, sha256: hash.digest('hex'), size });
    if (keepSmall(name)) small.set(name, Buffer.concat(chunks));
  };

  try {
    for await (const entry of extract) await consume(entry.header, entry as unknown as Readable);
    await feeding;
  } catch (error) {
    input.destroy();
    if (error instanceof PackageError) throw error;
    throw new PackageError('package_invalid', `the file is not a gzip-compressed tar package: ${(error as Error).message}`);
  }
  const manifestBytes = small.get(PACKAGE_MANIFEST_FILE);
  if (!manifestBytes) throw new PackageError('package_invalid', `the package has no ${PACKAGE_MANIFEST_FILE} at its root`);
  let manifest: Record<string, unknown>;
  try {
    manifest = JSON.parse(manifestBytes.toString('utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new PackageError('package_invalid', `${PACKAGE_MANIFEST_FILE} is not JSON: ${(error as Error).message}`);
  }
  if (!manifest || typeof manifest !== 'object' || Array.isArray(manifest)) throw new PackageError('package_invalid', `${PACKAGE_MANIFEST_FILE} must hold a JSON object`);
  const sigBytes = small.get(SIGNATURE_FILE);
  const readme = small.get('README.md')?.toString('utf8');
  const changelog = small.get('CHANGELOG.md')?.toString('utf8');
  return {
    manifest,
    signature: sigBytes ? parseSignature(sigBytes.toString('utf8')) : undefined,
    files: files.sort((a, b) => byteOrder(a.path, b.path)),
    ...(readme !== undefined ? { readme } : {}),
    ...(changelog !== undefined ? { changelog } : {}),
    sha256: tgzHash.digest('hex'),
    size: tgzSize,
  };
}

/** Read a `.tgz` (a path, a Buffer or a stream) without writing anything; throws {@link PackageError}. */
export function readPackage(source: string | Buffer | NodeJS.ReadableStream, options: { limits?: PackageLimits } = {}): Promise<PackageContents> {
  return scan(source, options);
}

/**
 * Extract a `.tgz` into `destDir`, which must not exist yet: everything is written to a sibling
 * temporary folder first and renamed into place, so a refused package leaves nothing behind.
 */
export async function extractPackage(source: string | Buffer | NodeJS.ReadableStream, destDir: string, options: { limits?: PackageLimits } = {}): Promise<PackageContents> {
  const dest = path.resolve(destDir);
  await mkdir(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.${randomBytes(4).toString('hex')}.partial`;
  await mkdir(tmp, { mode: 0o755 });
  try {
    const contents = await scan(source, options, tmp);
    await rename(tmp, dest);
    return contents;
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    throw error;
  }
}

/** Re-sign a `.tgz` with a key: extract it, check it is intact, write a new SIGNATURE, repack. */
export async function signPackageFile(tgz: string, key: KeyPair, outFile = tgz): Promise<{ sha256: string; size: number; signature: SignatureDocument }> {
  const work = path.join(path.dirname(path.resolve(outFile)), `.aiplat-sign-${randomBytes(4).toString('hex')}`);
  try {
    const contents = await extractPackage(tgz, work);
    const check = verifyPackage(contents, []);
    if (check.status === 'modified') throw new PackageError('package_invalid', `refusing to sign a modified package: ${check.reason}`);
    await rm(path.join(work, SIGNATURE_FILE), { force: true });
    const signature = await writeSignature(work, { key });
    const packed = await packFolder(work, outFile);
    return { ...packed, signature };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
