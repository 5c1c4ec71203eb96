/** Errors of the responses the SDK's API client does not read for us (blob downloads, tus uploads), as `ApiError`s. */
import { ApiError } from '@aiplat/plugin-sdk/web';

/** The core's error body (`{ error: { code, message, details, requestId } }`) of a failed response as an `ApiError`. */
export async function parseResponseError(res: Response): Promise<ApiError> {
  let body: { error?: { code?: string; message?: string; details?: unknown; requestId?: string } } = {};
  try {
    body = (await res.json()) as typeof body;
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, body.error?.code ?? `http_${res.status}`, body.error?.message ?? res.statusText, body.error?.details, body.error?.requestId);
}

/** The same for a body already read as text (tus-js-client hands the response over that way). */
export function errorFromText(status: number, text: string | null | undefined): ApiError {
  let body: { error?: { code?: string; message?: string; details?: unknown; requestId?: string } } = {};
  try {
    body = JSON.parse(text ?? '') as typeof body;
  } catch {
    /* not JSON */
  }
  return new ApiError(status, body.error?.code ?? `http_${status}`, body.error?.message ?? (text || `HTTP ${status}`), body.error?.details, body.error?.requestId);
}
