import type { Knex } from 'knex';
import { decryptSetting, deriveSecretKey, encryptSetting, isSecretMarker } from './crypto.js';
import { nodeSecretOwner, readKeyCheck, SecretKeyError, storedSecrets, verifyKey, writeKeyCheck } from './keys.js';
import { findSecretMarkers, mapSecretMarkers } from './paths.js';

export interface RotationResult {
  /** How many secrets were re-encrypted. */
  secrets: number;
  /** The plugins whose settings hold them. */
  plugins: string[];
  fromKeyId: string | undefined;
  toKeyId: string;
}

/**
 * Re-encrypt every stored secret with a new master key and record the new key check, in one
 * transaction: either every secret moves to the new key or none does. The current key must be
 * the one the secrets were encrypted with (it may be absent only when nothing is stored yet).
 */
export async function rotateSecrets(db: Knex, masterKeys: { current: string | undefined; next: string }): Promise<RotationResult> {
  return db.transaction(async (trx) => {
    const { rows, secrets, nodes } = await storedSecrets(trx, { forUpdate: true });
    const { key: oldKey } = verifyKey(masterKeys.current, { secrets, keyCheck: await readKeyCheck(trx) });
    const newKey = deriveSecretKey(masterKeys.next);
    if (oldKey?.id === newKey.id) {
      throw new SecretKeyError(`AIPLAT_NEW_SECRET_KEY is the same key as AIPLAT_SECRET_KEY (key id ${newKey.id}): nothing to rotate.`);
    }
    const plugins: string[] = [];
    for (const row of rows) {
      if (findSecretMarkers(row.config).length === 0) continue;
      const config = mapSecretMarkers(row.config, (path, marker) =>
        encryptSetting(newKey, row.id, path, decryptSetting(oldKey!, row.id, path, marker)),
      );
      await trx('plugin_states').where({ id: row.id }).update({ config: JSON.stringify(config), updated_at: trx.fn.now() });
      plugins.push(row.id);
    }
    for (const node of nodes) {
      const owner = nodeSecretOwner(node.id);
      const sealed = Object.fromEntries(
        Object.entries(node.connection_secrets).map(([field, marker]) => [field, isSecretMarker(marker) ? encryptSetting(newKey, owner, [field], decryptSetting(oldKey!, owner, [field], marker)) : marker]),
      );
      await trx('nodes').where({ id: node.id }).update({ connection_secrets: JSON.stringify(sealed) });
      plugins.push(owner);
    }
    await writeKeyCheck(trx, newKey);
    return { secrets: secrets.length, plugins, fromKeyId: oldKey?.id, toKeyId: newKey.id };
  });
}
