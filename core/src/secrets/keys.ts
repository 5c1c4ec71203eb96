import type { Knex } from 'knex';
import { decryptSetting, decryptText, deriveSecretKey, encryptText, isSecretMarker, parseEnvelope, SecretDecryptError, type SecretKey, type SecretMarker } from './crypto.js';
import { findSecretMarkers, pathName, type SettingPath } from './paths.js';

/** The `settings` row that records which key the stored secrets were encrypted with. */
export const KEY_CHECK_SETTING = 'secrets.keyCheck';
const KEY_CHECK_CONTEXT = 'aiplat:secrets:key-check';
const KEY_CHECK_PLAINTEXT = 'aiplat secret key check';

export interface KeyCheck {
  keyId: string;
  /** A known plaintext encrypted with the key: proof beyond the key id. */
  check: string;
}

/** A start-up (or rotation) failure an administrator fixes by setting the right AIPLAT_SECRET_KEY. */
export class SecretKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretKeyError';
  }
}

export interface StoredSecret {
  plugin: string;
  path: SettingPath;
  marker: SecretMarker;
}

export function makeKeyCheck(key: SecretKey): KeyCheck {
  return { keyId: key.id, check: encryptText(key, KEY_CHECK_PLAINTEXT, KEY_CHECK_CONTEXT) };
}

export async function readKeyCheck(db: Knex): Promise<KeyCheck | undefined> {
  const row = (await db('settings').where({ key: KEY_CHECK_SETTING }).first('value')) as { value: unknown } | undefined;
  const value = typeof row?.value === 'string' ? (JSON.parse(row.value) as unknown) : row?.value;
  if (typeof value !== 'object' || value === null) return undefined;
  const { keyId, check } = value as Partial<KeyCheck>;
  return typeof keyId === 'string' && typeof check === 'string' ? { keyId, check } : undefined;
}

export async function writeKeyCheck(db: Knex, key: SecretKey): Promise<void> {
  await db('settings')
    .insert({ key: KEY_CHECK_SETTING, value: JSON.stringify(makeKeyCheck(key)), updated_at: db.fn.now() })
    .onConflict('key')
    .merge(['value', 'updated_at']);
}

/** Every secret stored in plugin settings. */
export async function storedSecrets(
  db: Knex,
  options: { forUpdate?: boolean } = {},
): Promise<{ rows: { id: string; config: unknown }[]; secrets: StoredSecret[]; nodes: { id: string; connection_secrets: Record<string, unknown> }[] }> {
  const query = db('plugin_states').select('id', 'config').orderBy('id');
  const rows = (await (options.forUpdate ? query.forUpdate() : query)) as { id: string; config: unknown }[];
  for (const row of rows) if (typeof row.config === 'string') row.config = JSON.parse(row.config) as unknown;
  const secrets = rows.flatMap((row) => findSecretMarkers(row.config).map(({ path, marker }) => ({ plugin: row.id, path, marker })));
  // Nodes added through the API keep their TLS keys and other secret settings sealed the same way,
  // bound to "node:<id>" and the field's name.
  const nodeQuery = db('nodes').whereNotNull('connection_secrets').select('id', 'connection_secrets').orderBy('id');
  const nodes = (await (options.forUpdate ? nodeQuery.forUpdate() : nodeQuery)) as { id: string; connection_secrets: unknown }[];
  for (const node of nodes) {
    const sealed = (typeof node.connection_secrets === 'string' ? JSON.parse(node.connection_secrets) : node.connection_secrets) as Record<string, unknown>;
    node.connection_secrets = sealed;
    for (const [field, marker] of Object.entries(sealed ?? {})) {
      if (isSecretMarker(marker)) secrets.push({ plugin: nodeSecretOwner(node.id), path: [field], marker });
    }
  }
  return { rows, secrets, nodes: nodes as { id: string; connection_secrets: Record<string, unknown> }[] };
}

/** What a node's secret settings are bound to (in place of a plugin id). */
export function nodeSecretOwner(nodeId: string): string {
  return `node:${nodeId}`;
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * Check the configured key against what is stored and decrypt every stored secret with it.
 * Throws a SecretKeyError an administrator can act on when the key is missing or wrong.
 */
export function verifyKey(
  masterKey: string | undefined,
  stored: { secrets: StoredSecret[]; keyCheck: KeyCheck | undefined },
  variable = 'AIPLAT_SECRET_KEY',
): { key: SecretKey | undefined; plaintexts: { secret: StoredSecret; value: unknown }[] } {
  const { secrets, keyCheck } = stored;
  const expectedIds = [...new Set([...(keyCheck ? [keyCheck.keyId] : []), ...secrets.map((s) => parseEnvelope(s.marker.$secret)?.keyId ?? '?')])];
  if (!masterKey) {
    if (secrets.length > 0) {
      const plugins = [...new Set(secrets.map((s) => s.plugin))];
      throw new SecretKeyError(
        `${variable} is not set, but ${plural(secrets.length, 'stored secret needs', 'stored secrets need')} it (plugin settings of ${plugins.join(', ')}). ` +
          `Set ${variable} to the key they were encrypted with (key id ${expectedIds.join(', ')}).`,
      );
    }
    if (keyCheck) {
      throw new SecretKeyError(
        `${variable} is not set, but this installation's secrets were set up with a key (key id ${keyCheck.keyId}). Set ${variable} to that key.`,
      );
    }
    return { key: undefined, plaintexts: [] };
  }
  const key = deriveSecretKey(masterKey);
  const mismatch = (expected: string) =>
    new SecretKeyError(`${variable} does not match the key the stored secrets were encrypted with (key id ${key.id}, expected ${expected}).`);
  if (keyCheck) {
    if (keyCheck.keyId !== key.id) throw mismatch(keyCheck.keyId);
    try {
      decryptText(key, keyCheck.check, KEY_CHECK_CONTEXT);
    } catch {
      throw mismatch(keyCheck.keyId);
    }
  }
  const plaintexts: { secret: StoredSecret; value: unknown }[] = [];
  for (const secret of secrets) {
    const keyId = parseEnvelope(secret.marker.$secret)?.keyId;
    if (keyId && keyId !== key.id) throw mismatch(keyId);
    try {
      plaintexts.push({ secret, value: decryptSetting(key, secret.plugin, secret.path, secret.marker) });
    } catch (error) {
      const why = error instanceof SecretDecryptError ? error.message : String(error);
      throw new SecretKeyError(`the stored secret ${pathName(secret.path)} of plugin ${secret.plugin} cannot be decrypted with ${variable} (key id ${key.id}): ${why}`);
    }
  }
  return { key, plaintexts };
}
