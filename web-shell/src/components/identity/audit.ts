/**
 * The audit log API (core/src/audit/routes.ts): rows, filters, the export download (which needs the
 * bearer token, so it is fetched and saved as a Blob, not followed as a link) and chain verification.
 */
import { coreApi, type AuditActorType, type AuditOutcome, type ChainedAuditRecord, type Query } from '@aiplat/plugin-sdk/web';

export const ACTOR_TYPES = ['user', 'token', 'plugin', 'system', 'anonymous'] as const satisfies readonly AuditActorType[];
export const OUTCOMES = ['success', 'denied', 'failure', 'error'] as const satisfies readonly AuditOutcome[];
export type { AuditOutcome };

/** A row as the audit API lists it (the SDK's contract, with its hash). */
export type AuditRecord = ChainedAuditRecord;

export interface VerifyResult {
  ok: boolean;
  checked: number;
  firstBadId: number | null;
  problem?: string;
  lastId?: number;
  headFile?: { id: number | null; hash: string | null; matches: boolean; problem?: string };
}

/** The filters as the list and the export take them. */
export interface AuditFilters {
  actor?: string;
  action?: string;
  resource?: string;
  outcome?: AuditOutcome;
  requestId?: string;
  /** RFC 3339. */
  from?: string;
  to?: string;
}

export function toQuery(filters: AuditFilters): Query {
  const out: Query = {};
  for (const [key, value] of Object.entries(filters)) if (value !== undefined && value !== '') out[key] = value;
  return out;
}

/** Download the matching rows as a file (JSON Lines or CSV), with the session's token; resolves with the file's name. */
export function downloadAuditExport(format: 'jsonl' | 'csv', filters: AuditFilters): Promise<string> {
  return coreApi.download('/audit/export', undefined, { format, ...toQuery(filters) });
}
