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
