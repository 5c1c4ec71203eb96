import { AiplatError } from '@aiplat/plugin-sdk';

/** The most bytes a key may have (S3's limit for a whole object key). */
export const MAX_KEY_BYTES = 1024;
/**
 * The most bytes one segment may have. Folders and files hold one segment each, and file
 * systems refuse names past 255 bytes; the folder backend adds a short suffix to some names.
 */
export const MAX_SEGMENT_BYTES = 200;

const SEGMENT_CHARS = /^[A-Za-z0-9._-]*$/;

function refuse(what: 'key' | 'prefix', value: string, rule: string): AiplatError {
  return new AiplatError('validation_failed', `Storage ${what} ${JSON.stringify(value)} is refused: ${rule}`, { [what]: value, rule });
}

function checkCommon(what: 'key' | 'prefix', value: unknown): string {
  if (typeof value !== 'string') {
    throw new AiplatError('validation_failed', `Storage ${what} must be a string, got ${value === null ? 'null' : typeof value}`, { rule: 'a string' });
  }
  if (Buffer.byteLength(value, 'utf8') > MAX_KEY_BYTES) throw refuse(what, value, `at most ${MAX_KEY_BYTES} bytes`);
  if (value.includes('\0')) throw refuse(what, value, 'no NUL character');
  if (value.includes('\\')) throw refuse(what, value, 'no backslash; segments are separated by "/"');
  if (value.startsWith('/')) throw refuse(what, value, 'no leading "/" (keys are relative to the namespace)');
  return value;
}

function checkSegment(what: 'key' | 'prefix', value: string, segment: string): void {
  if (segment === '') throw refuse(what, value, 'no empty segment ("//", or "/" at the end)');
  if (segment === '.' || segment === '..') throw refuse(what, value, 'no "." or ".." segment');
  if (!SEGMENT_CHARS.test(segment)) throw refuse(what, value, 'segments use only letters, digits, ".", "_" and "-"');
  if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) throw refuse(what, value, `each segment at most ${MAX_SEGMENT_BYTES} bytes`);
}

/**
 * A key: `/`-separated segments of `[A-Za-z0-9._-]`, no empty, `.` or `..` segment, no leading
 * `/`, at most 1024 bytes. Anything else (`../x`, absolute paths, backslashes, NUL) is refused
 * with `validation_failed` naming the key and the rule.
 */
export function validateKey(key: unknown): string {
  const value = checkCommon('key', key);
  if (value === '') throw refuse('key', value, 'not empty');
  for (const segment of value.split('/')) checkSegment('key', value, segment);
  return value;
}

/**
 * A list prefix: a string prefix of keys (`models/` or `models/lla`). Every complete segment
 * (followed by `/`) follows the key rules; the last, partial one may be empty or any run of key
 * characters (`.` included, as the start of `.hidden`).
 */
export function validatePrefix(prefix: unknown): string {
  const value = checkCommon('prefix', prefix ?? '');
  const segments = value.split('/');
  const partial = segments.pop()!;
  for (const segment of segments) checkSegment('prefix', value, segment);
  if (!SEGMENT_CHARS.test(partial)) throw refuse('prefix', value, 'segments use only letters, digits, ".", "_" and "-"');
  return value;
}

/** An opaque list cursor: the last key of the previous page. */
export function encodeCursor(lastKey: string): string {
  return Buffer.from(lastKey, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: unknown): string {
  if (typeof cursor !== 'string' || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw new AiplatError('validation_failed', 'The list cursor is not one this storage handed out', { cursor });
  }
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  try {
    return validateKey(key);
  } catch {
    throw new AiplatError('validation_failed', 'The list cursor is not one this storage handed out', { cursor });
  }
}

/** A plugin namespace is `plugins/<id>`; the id follows the manifest's rule, so it cannot climb out. */
export function pluginNamespace(pluginId: string): string {
  if (!/^[a-z][a-z0-9-]{1,38}[a-z0-9]$/.test(pluginId)) throw new Error(`storage: "${pluginId}" is not a plugin id`);
  return `plugins/${pluginId}`;
}
