/**
 * Errors the registry answers with: `{ error: { code, message, details, requestId } }` and an
 * HTTP status. Messages say what is wrong and what to do, in words a person understands.
 */
export type RegistryErrorCode =
  | 'bad_request'
  | 'validation_failed'
  | 'unauthenticated'
  | 'not_owner'
  | 'not_found'
  | 'method_not_allowed'
  | 'version_exists'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'package_invalid'
  | 'manifest_invalid'
  | 'signature_missing'
  | 'package_modified'
  | 'internal';

const STATUS: Record<RegistryErrorCode, number> = {
  bad_request: 400,
  validation_failed: 400,
  package_invalid: 400,
  manifest_invalid: 400,
  signature_missing: 400,
  package_modified: 400,
  unauthenticated: 401,
  not_owner: 403,
  not_found: 404,
  method_not_allowed: 405,
  version_exists: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  internal: 500,
};

export class RegistryError extends Error {
  readonly status: number;
  constructor(
    readonly code: RegistryErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'RegistryError';
    this.status = STATUS[code];
  }
}

export interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown>; requestId: string };
}

/** The status and body for any error; `serverFault` when it is the registry's own failure (logged). */
export function toErrorResponse(error: unknown, requestId: string): { status: number; body: ErrorBody; serverFault: boolean } {
  if (error instanceof RegistryError) {
    const body: ErrorBody = { error: { code: error.code, message: error.message, requestId } };
    if (error.details !== undefined) body.error.details = error.details;
    return { status: error.status, body, serverFault: error.status >= 500 };
  }
  // Errors from Koa itself (http-errors) carry a client status.
  const koaError = error as { status?: number; expose?: boolean; message?: string };
  if (typeof koaError.status === 'number' && koaError.status >= 400 && koaError.status < 500) {
    return {
      status: koaError.status,
      body: { error: { code: koaError.status === 413 ? 'payload_too_large' : koaError.status === 405 ? 'method_not_allowed' : 'bad_request', message: koaError.expose && koaError.message ? koaError.message : 'The request is not valid.', requestId } },
      serverFault: false,
    };
  }
  return {
    status: 500,
    body: { error: { code: 'internal', message: 'Something went wrong in the registry. The request id identifies it in the logs.', requestId } },
    serverFault: true,
  };
}
