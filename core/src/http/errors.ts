import { AiplatError, errorCatalog, isAiplatError, type ErrorBody } from '@aiplat/plugin-sdk';

export interface HttpError {
  status: number;
  body: ErrorBody | OpenAiErrorBody;
  /** Whether this is the server's fault (logged as an error) rather than the client's. */
  serverFault: boolean;
}

export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** Errors thrown by Koa itself (http-errors) carry a status; keep client errors client errors. */
function fromKoaError(error: { status?: number; expose?: boolean; message: string }): AiplatError | undefined {
  if (typeof error.status !== 'number' || error.status >= 500) return undefined;
  const match = Object.entries(errorCatalog).find(([, entry]) => entry.status === error.status);
  const code = (match?.[0] ?? 'bad_request') as keyof typeof errorCatalog;
  return new AiplatError(code, error.expose ? error.message : undefined);
}

export function toHttpError(error: unknown, requestId: string, style: 'aiplat' | 'openai' = 'aiplat'): HttpError {
  const known = isAiplatError(error) ? error : fromKoaError(error as { status?: number; message: string });
  const err = known ?? new AiplatError('internal');
  if (style === 'openai') {
    const details = err.details as Record<string, unknown> | undefined;
    const type = err.status === 401 ? 'authentication_error' : err.status === 429 ? 'rate_limit_error' : err.status >= 500 ? 'server_error' : 'invalid_request_error';
    return {
      status: err.status,
      serverFault: known === undefined || err.status >= 500,
      // OpenAI's own codes (`model_not_found`, `invalid_api_key`, …) where the thrower names one; the field as `param`.
      body: { error: { message: err.message, type, param: typeof details?.field === 'string' ? details.field : null, code: typeof details?.openaiCode === 'string' ? details.openaiCode : err.code } },
    };
  }
  const body: ErrorBody = { error: { code: err.code, message: err.message, requestId } };
  if (err.details !== undefined) body.error.details = err.details;
  return { status: err.status, body, serverFault: known === undefined || err.status >= 500 };
}
