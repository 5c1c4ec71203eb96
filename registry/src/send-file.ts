import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Context } from 'koa';
import type { RegistryError } from './errors.js';

export interface SendFileOptions {
  type: string;
  /** Strong validator, e.g. the SHA-256 of the file (sent quoted). */
  etag?: string;
  cacheControl: string;
  /** Offer the file as a download under this name. */
  filename?: string;
  notFound: () => RegistryError;
}

/** Stream a file with its length, validators and caching headers; 304 when the client has it. */
export async function sendFile(ctx: Context, file: string, options: SendFileOptions): Promise<void> {
  const s = await stat(file).catch(() => undefined);
  if (!s?.isFile()) throw options.notFound();
  ctx.status = 200;
  // attachment() sets a type from the file name: the given type comes after it.
  if (options.filename) ctx.attachment(options.filename, { type: 'attachment' });
  ctx.type = options.type;
  ctx.lastModified = s.mtime;
  ctx.etag = options.etag ? `"${options.etag}"` : `W/"${s.size.toString(16)}-${Math.floor(s.mtimeMs).toString(16)}"`;
  ctx.set('Cache-Control', options.cacheControl);
  if (ctx.fresh) {
    ctx.status = 304;
    return;
  }
  // Koa destroys the stream when the response ends (also for HEAD, which sends no body).
  ctx.body = createReadStream(file);
  ctx.length = s.size;
}
