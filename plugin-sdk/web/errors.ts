/** An error answered by the API (`{ error: { code, message, details } }`), or a network failure (`code: "network"`). */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    readonly requestId?: string,
  ) {
    super(message);
  }
}

export function isApiError(error: unknown): error is ApiError {
  return error instanceof ApiError;
}

let loadErrorMessages: (() => Promise<void>) | undefined;

/**
 * How the error catalog's translations load (the shell sets it: they are not in its first load).
 * The API client and the session wait for it before handing out an error, so a caller translating
 * the error's code always finds the message.
 */
export function setErrorMessagesLoader(loader: () => Promise<void>): void {
  loadErrorMessages = loader;
}

/** Resolves once the error translations are there (or could not load: the server's message then shows). */
export async function errorMessagesReady(): Promise<void> {
  try {
    await loadErrorMessages?.();
  } catch {
    // No translations: useErrorMessage falls back to the server's own message.
  }
}

type ErrorBody = { error?: { code?: string; message?: string; details?: unknown; requestId?: string } } | null;

/**
 * The core's error body (`{ error: { code, message, details, requestId } }`), already read as text,
 * as an {@link ApiError}: for responses read by something else than the SDK (an upload library, an
 * XHR). A body that is not that shape gives `http_<status>` with `fallback` (else the text) as message.
 */
export function apiErrorFromText(status: number, text: string | null | undefined, fallback?: string): ApiError {
  let error: NonNullable<ErrorBody>['error'];
  try {
    error = (JSON.parse(text ?? '') as ErrorBody)?.error;
  } catch {
    /* not JSON */
  }
  return new ApiError(status, error?.code ?? `http_${status}`, error?.message ?? (fallback || text || `HTTP ${status}`), error?.details, error?.requestId);
}

/** A failed `Response` as an {@link ApiError} (reads its body; waits for the error translations first). */
export async function apiErrorOf(response: Response): Promise<ApiError> {
  await errorMessagesReady();
  let text = '';
  try {
    text = await response.text();
  } catch {
    /* no body */
  }
  return apiErrorFromText(response.status, text, response.statusText);
}
