/**
 * The audit log API (core/src/audit/routes.ts): rows, filters, the export download (which needs the
 * bearer token, so it is fetched and saved as a Blob, not followed as a link) and chain verification.
 */
import { ApiError, session, withBase, type AuditActorType, type AuditOutcome, type ChainedAuditRecord, type Query } from '@aiplat/plugin-sdk/web';

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

async function errorOf(res: Response): Promise<ApiError> {
  let body: { error?: { code?: string; message?: string; details?: unknown; requestId?: string } } = {};
  try {
    body = (await res.json()) as typeof body;
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, body.error?.code ?? `http_${res.status}`, body.error?.message ?? res.statusText, body.error?.details, body.error?.requestId);
}

/** Download the matching rows as a file (JSON Lines or CSV), with the session's token. */
export async function downloadAuditExport(format: 'jsonl' | 'csv', filters: AuditFilters): Promise<string> {
  const params = new URLSearchParams({ format });
  for (const [key, value] of Object.entries(toQuery(filters))) params.set(key, String(value));
  const url = `${withBase('/api/v1/audit/export')}?${params}`;
  const send = async () => {
    try {
      return await fetch(url, { headers: { authorization: `Bearer ${await session.accessToken()}` } });
    } catch (error) {
      throw new ApiError(0, 'network', (error as Error).message);
    }
  };
  let res = await send();
  if (res.status === 401) {
    await session.refresh();
    res = await send();
  }
  if (!res.ok) throw await errorOf(res);
  const blob = await res.blob();
  const disposition = res.headers.get('content-disposition') ?? '';
  const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? `aiplat-audit.${format}`;
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = name;
  a.style.display = 'none';
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 30_000);
  return name;
}
