import type { Knex } from 'knex';
import type { Principal } from '@aiplat/plugin-sdk';
import type { Redactor } from '../secrets/redactor.js';

export interface AuditEntry {
  action: string;
  plugin?: string;
  actor?: Principal;
  requestId?: string;
  status?: number;
  details: Record<string, unknown>;
}

/**
 * Writes audit rows in the caller's transaction, so the change and its record commit together.
 * Details pass through the core's redactor: secret values and secret-named fields show as "••••".
 */
export class AuditWriter {
  constructor(private readonly redactor?: Redactor) {}

  async write(db: Knex, entry: AuditEntry): Promise<void> {
    const details = this.redactor ? this.redactor.redactValue(entry.details) : entry.details;
    await db('audit_log').insert({
      action: entry.action,
      plugin: entry.plugin ?? null,
      actor_id: entry.actor?.id ?? null,
      actor_name: entry.actor?.username ?? null,
      request_id: entry.requestId ?? null,
      status: entry.status ?? null,
      details: JSON.stringify(details),
    });
  }
}
