import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Encryption of secret settings: AES-256-GCM under a key derived from AIPLAT_SECRET_KEY with
 * HKDF-SHA256. Each value gets a random 12-byte IV and is bound (as additional authenticated data)
 * to where it is stored, so a ciphertext copied into another field or plugin does not decrypt.
 *
 * A stored value is `v1:<keyId>:<iv>:<tag>:<ciphertext>` (base64url parts). The key id is the
 * start of a SHA-256 of the derived key: it names the key a value needs without revealing it, so a
 * wrong key is reported as such instead of as a corrupt value.
 */

const FORMAT = 'v1';
/** Fixed HKDF info: changing it changes every derived key (a new FORMAT would go with it). */
const HKDF_INFO = 'aiplat secret settings v1';
const IV_BYTES = 12;

export interface SecretKey {
  readonly key: Buffer;
  /** 8 hex characters naming the key. */
  readonly id: string;
}

export class SecretDecryptError extends Error {
  constructor(message: string, readonly keyId?: string) {
    super(message);
    this.name = 'SecretDecryptError';
  }
}

export function deriveSecretKey(masterKey: string): SecretKey {
  const key = Buffer.from(hkdfSync('sha256', Buffer.from(masterKey, 'utf8'), Buffer.alloc(0), HKDF_INFO, 32));
  return { key, id: createHash('sha256').update(key).digest('hex').slice(0, 8) };
}

export interface Envelope {
  keyId: string;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
}

export function parseEnvelope(text: string): Envelope | undefined {
  const parts = text.split(':');
  if (parts.length !== 5 || parts[0] !== FORMAT || !/^[0-9a-f]{8}$/.test(parts[1]!)) return undefined;
  const [, keyId, iv, tag, ciphertext] = parts as [string, string, string, string, string];
  return { keyId, iv: Buffer.from(iv, 'base64url'), tag: Buffer.from(tag, 'base64url'), ciphertext: Buffer.from(ciphertext, 'base64url') };
}

/** Encrypt `plaintext`, bound to `context` (where it is stored). */
export function encryptText(key: SecretKey, plaintext: string, context: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key.key, iv);
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return [FORMAT, key.id, iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ciphertext.toString('base64url')].join(':');
}

export function decryptText(key: SecretKey, envelope: string, context: string): string {
  const parsed = parseEnvelope(envelope);
  if (!parsed) throw new SecretDecryptError('not an encrypted value in a known format');
  if (parsed.keyId !== key.id) {
    throw new SecretDecryptError(`encrypted with key id ${parsed.keyId}, but AIPLAT_SECRET_KEY has key id ${key.id}`, parsed.keyId);
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', key.key, parsed.iv);
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(parsed.tag);
    return Buffer.concat([decipher.update(parsed.ciphertext), decipher.final()]).toString('utf8');
  } catch {
    throw new SecretDecryptError('the value does not decrypt: it was changed, moved or encrypted with another key', parsed.keyId);
  }
}

/** The marker stored in place of a secret value inside a settings object. */
export interface SecretMarker {
  $secret: string;
}

export function isSecretMarker(value: unknown): value is SecretMarker {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as SecretMarker).$secret === 'string' &&
    Object.keys(value).length === 1
  );
}

/** What a secret setting is bound to: the plugin and the field's path in its settings. */
export function settingContext(pluginId: string, path: readonly string[]): string {
  return `aiplat:plugin-settings:${pluginId}:${JSON.stringify(path)}`;
}

export function encryptSetting(key: SecretKey, pluginId: string, path: readonly string[], value: unknown): SecretMarker {
  return { $secret: encryptText(key, JSON.stringify(value), settingContext(pluginId, path)) };
}

export function decryptSetting(key: SecretKey, pluginId: string, path: readonly string[], marker: SecretMarker): unknown {
  return JSON.parse(decryptText(key, marker.$secret, settingContext(pluginId, path))) as unknown;
}
