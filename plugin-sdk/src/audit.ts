// The audit log's row, as the API shows it: shared by the core, plugins and the web shell (no Node types here).

/** How an audited action ended. `denied`: refused for lack of credentials or permission. */
export type AuditOutcome = 'success' | 'denied' | 'failure' | 'error';

/** Who did an audited action: a signed-in user, an API token, a plugin, the core itself, or nobody signed in. */
export type AuditActorType = 'user' | 'token' | 'plugin' | 'system' | 'anonymous';

/** One audit row as `GET /api/v1/audit` shows it and the chain hashes it (the row's `hash` aside). */
export interface AuditRecord {
  id: number;
  /** ISO 8601, UTC, milliseconds: `2026-05-01T12:00:00.000Z`. */
  at: string;
  actorType: AuditActorType;
  actorId: string | null;
  actorName: string | null;
  action: string;
  resourceType: string | null;
  resourceId: string | null;
  teamId: string | null;
  plugin: string | null;
  requestId: string | null;
  clientIp: string | null;
  outcome: AuditOutcome;
  status: number | null;
  details: unknown;
  prevHash: string;
}

/** An audit row with its own hash, as the API lists and exports it. */
export interface ChainedAuditRecord extends AuditRecord {
  hash: string;
}
