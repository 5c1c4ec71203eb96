import type { Knex } from 'knex';
import { AiplatError, type JsonSchema, type Logger } from '@aiplat/plugin-sdk';
import type { PluginSettingsStore } from '../kernel/kernel.js';
import { settingsValidator } from '../http/validation.js';
import { decryptSetting, encryptSetting, isSecretMarker, type SecretKey } from './crypto.js';
import { nodeSecretOwner, readKeyCheck, storedSecrets, verifyKey, writeKeyCheck } from './keys.js';
import { deleteAt, getAt, mapSecretMarkers, pathName, secretPaths, setAt } from './paths.js';
import { REDACTED, type Redactor } from './redactor.js';

/** What the settings API shows: secrets as "••••" when set (absent otherwise), and which are set. */
export interface SettingsView {
  values: Record<string, unknown>;
  secrets: Record<string, { set: boolean }>;
  schema: JsonSchema;
}

export interface SettingsChange {
  view: SettingsView;
  /** Top-level fields whose stored value changed. */
  changed: string[];
  /** Secret fields given a new value, and secret fields cleared. */
  secretsSet: string[];
  secretsCleared: string[];
}

const EMPTY_SCHEMA: JsonSchema = { type: 'object' };

function asObject(value: unknown): Record<string, unknown> {
  const parsed = typeof value === 'string' ? (JSON.parse(value) as unknown) : value;
  return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
}

/**
 * Plugin settings with `x-secret` fields encrypted at rest. The kernel reads them decrypted
 * (`read`); the API sees them write-only (`view`, `write`). Every secret plaintext it handles is
 * given to the redactor, so it never shows in logs, audit details or error bodies.
 */
export class SecretSettings implements PluginSettingsStore {
  private constructor(
    private readonly db: Knex,
    private readonly key: SecretKey | undefined,
    private readonly redactor: Redactor,
  ) {}

  /**
   * Check AIPLAT_SECRET_KEY against the stored secrets (a SecretKeyError when it is missing or
   * wrong: the core must not start) and teach the redactor every stored plaintext.
   */
  static async open(options: { db: Knex; masterKey: string | undefined; redactor: Redactor; logger: Logger }): Promise<SecretSettings> {
    const { db, redactor } = options;
    const [{ secrets }, keyCheck] = await Promise.all([storedSecrets(db), readKeyCheck(db)]);
    const { key, plaintexts } = verifyKey(options.masterKey, { secrets, keyCheck });
    for (const { value } of plaintexts) redactor.addSecret(value);
    if (key && secrets.length > 0 && !keyCheck) await writeKeyCheck(db, key);
    if (secrets.length > 0) options.logger.info({ secrets: secrets.length, keyId: key?.id }, 'secret settings unlocked');
    return new SecretSettings(db, key, redactor);
  }

  /** Whether secrets can be stored (AIPLAT_SECRET_KEY is set). */
  get canStoreSecrets(): boolean {
    return this.key !== undefined;
  }

  /** Encrypt a node's secret settings (TLS key...): one `{ $secret }` marker per field. */
  sealNodeSecrets(nodeId: string, secrets: Record<string, string>): Record<string, unknown> {
    if (!this.key) throw new AiplatError('secret_key_missing', 'Node secrets are stored encrypted: set AIPLAT_SECRET_KEY on the server first.');
    const owner = nodeSecretOwner(nodeId);
    return Object.fromEntries(
      Object.entries(secrets).map(([field, value]) => {
        this.redactor.addSecret(value);
        return [field, encryptSetting(this.key!, owner, [field], value)];
      }),
    );
  }

  /** A node's secret settings in clear (for its connector). */
  openNodeSecrets(nodeId: string, sealed: Record<string, unknown>): Record<string, string> {
    const owner = nodeSecretOwner(nodeId);
    const out: Record<string, string> = {};
    for (const [field, marker] of Object.entries(sealed)) {
      if (!isSecretMarker(marker)) continue;
      if (!this.key) throw new Error(`node ${nodeId} has a stored secret but AIPLAT_SECRET_KEY is not set`);
      const value = decryptSetting(this.key, owner, [field], marker);
      if (typeof value === 'string') {
        this.redactor.addSecret(value);
        out[field] = value;
      }
    }
    return out;
  }

  /** The key id of AIPLAT_SECRET_KEY, when set. */
  get keyId(): string | undefined {
    return this.key?.id;
  }

  private async stored(db: Knex, pluginId: string, forUpdate = false): Promise<{ exists: boolean; config: Record<string, unknown> }> {
    const query = db('plugin_states').where({ id: pluginId }).first('config');
    const row = (await (forUpdate ? query.forUpdate() : query)) as { config?: unknown } | undefined;
    return { exists: row !== undefined, config: asObject(row?.config) };
  }

  private decrypt(pluginId: string, config: Record<string, unknown>): Record<string, unknown> {
    return mapSecretMarkers(config, (path, marker) => {
      if (!this.key) throw new AiplatError('internal', `plugin ${pluginId} has a stored secret but AIPLAT_SECRET_KEY is not set`);
      const value = decryptSetting(this.key, pluginId, path, marker);
      this.redactor.addSecret(value);
      return value;
    }) as Record<string, unknown>;
  }

  /** The stored settings with secrets in clear, before defaults (what the kernel validates and hands the plugin). */
  async read(pluginId: string): Promise<Record<string, unknown>> {
    return this.decrypt(pluginId, (await this.stored(this.db, pluginId)).config);
  }

  private present(schema: JsonSchema, stored: Record<string, unknown>): SettingsView {
    const paths = secretPaths(schema);
    const masked = mapSecretMarkers(stored, () => REDACTED) as Record<string, unknown>;
    const values = settingsValidator(schema).withDefaults(masked);
    const secrets: SettingsView['secrets'] = {};
    for (const path of paths) {
      const set = isSecretMarker(getAt(stored, path));
      secrets[pathName(path)] = { set };
      // A schema default on a secret field is not a stored secret: show only what is set.
      if (!set) deleteAt(values, path);
      else setAt(values, path, REDACTED);
    }
    return { values, secrets, schema };
  }

  /** The settings as the API shows them. */
  async view(db: Knex, pluginId: string, schema: JsonSchema | undefined): Promise<SettingsView> {
    return this.present(schema ?? EMPTY_SCHEMA, (await this.stored(db, pluginId)).config);
  }

  /**
   * Replace a plugin's settings with `body` in the caller's transaction. Secret fields given as
   * "••••" or left out keep their stored value; `null` clears them. The result is validated against
   * the schema (closed objects, defaults applied); what is stored is the given values, secrets encrypted.
   */
  async write(db: Knex, pluginId: string, schema: JsonSchema | undefined, body: Record<string, unknown>): Promise<SettingsChange> {
    const settingsSchema = schema ?? EMPTY_SCHEMA;
    const paths = secretPaths(settingsSchema);
    const current = await this.stored(db, pluginId, true);
    const previous = this.decrypt(pluginId, current.config);
    const merged = structuredClone(body);
    const secretsSet: string[] = [];
    const secretsCleared: string[] = [];
    for (const path of paths) {
      const given = getAt(merged, path);
      const before = getAt(previous, path);
      if (given === undefined || given === REDACTED) {
        if (before !== undefined) setAt(merged, path, before);
        else deleteAt(merged, path);
      } else if (given === null) {
        deleteAt(merged, path);
        if (before !== undefined) secretsCleared.push(pathName(path));
      } else {
        this.redactor.addSecret(given);
        if (JSON.stringify(given) !== JSON.stringify(before)) secretsSet.push(pathName(path));
      }
    }
    settingsValidator(settingsSchema).validate(merged);

    if (secretsSet.length > 0 && !this.key) {
      throw new AiplatError(
        'secret_key_missing',
        `Cannot store the secret setting${secretsSet.length === 1 ? '' : 's'} ${secretsSet.join(', ')} of plugin ${pluginId}: the server has no AIPLAT_SECRET_KEY. ` +
          'Set AIPLAT_SECRET_KEY (at least 32 characters, e.g. `openssl rand -base64 48`) and restart aiplat, then save the settings again.',
        { plugin: pluginId, fields: secretsSet },
      );
    }
    const toStore = structuredClone(merged);
    let hasSecrets = false;
    for (const path of paths) {
      const value = getAt(toStore, path);
      if (value === undefined) continue;
      setAt(toStore, path, encryptSetting(this.key!, pluginId, path, value));
      hasSecrets = true;
    }
    if (current.exists) {
      await db('plugin_states').where({ id: pluginId }).update({ config: JSON.stringify(toStore), updated_at: db.fn.now() });
    } else {
      await db('plugin_states').insert({ id: pluginId, enabled: true, config: JSON.stringify(toStore), updated_at: db.fn.now() });
    }
    if (hasSecrets && (await readKeyCheck(db))?.keyId !== this.key!.id) await writeKeyCheck(db, this.key!);

    const changed = [...new Set([...Object.keys(previous), ...Object.keys(merged)])]
      .filter((name) => JSON.stringify(previous[name]) !== JSON.stringify(merged[name]))
      .sort();
    return { view: this.present(settingsSchema, toStore), changed, secretsSet, secretsCleared };
  }
}
