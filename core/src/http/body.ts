import { Transform, type Readable } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import contentType from 'content-type';
import getRawBody from 'raw-body';
import busboy from 'busboy';
import { AiplatError, DEFAULT_BODY_LIMIT, type BodySpec, type MultipartField, type MultipartFile } from '@aiplat/plugin-sdk';

export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return Number(length) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

function mediaType(req: IncomingMessage): { type: string; charset?: string } | undefined {
  const header = req.headers['content-type'];
  if (!header) return undefined;
  try {
    const parsed = contentType.parse(header);
    return { type: parsed.type, charset: parsed.parameters.charset };
  } catch {
    throw new AiplatError('unsupported_media_type', `The Content-Type header "${header}" cannot be parsed`);
  }
}

function limitOf(spec: { limit?: number }): number {
  return spec.limit ?? DEFAULT_BODY_LIMIT;
}

function tooLarge(limit: number): AiplatError {
  return new AiplatError('payload_too_large', `The request body is larger than this route accepts (${limit} bytes at most)`, { limit });
}

function checkDeclaredLength(req: IncomingMessage, limit: number): void {
  const length = Number(req.headers['content-length'] ?? 0);
  if (length > limit) throw tooLarge(limit);
}

async function readAll(req: IncomingMessage, limit: number): Promise<Buffer> {
  checkDeclaredLength(req, limit);
  try {
    return await getRawBody(req, { limit });
  } catch (error) {
    const e = error as { type?: string; status?: number };
    if (e.type === 'entity.too.large') throw tooLarge(limit);
    if (e.type === 'request.aborted') throw new AiplatError('bad_request', 'The client closed the connection before the body was complete');
    throw new AiplatError('bad_request', `The request body could not be read: ${(error as Error).message}`);
  }
}

export async function readJsonBody(req: IncomingMessage, spec: Extract<BodySpec, { mode: 'json' }>): Promise<unknown> {
  if (!hasBody(req)) throw new AiplatError('bad_request', 'This route needs a JSON request body');
  const media = mediaType(req);
  if (!media || !(media.type === 'application/json' || media.type.endsWith('+json'))) {
    throw new AiplatError(
      'unsupported_media_type',
      `This route accepts application/json, but the request says ${media ? media.type : 'nothing'} in Content-Type`,
    );
  }
  if (media.charset && !/^utf-?8$/i.test(media.charset)) {
    throw new AiplatError('unsupported_media_type', `JSON bodies must be UTF-8, not ${media.charset}`);
  }
  const text = (await readAll(req, limitOf(spec))).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new AiplatError('invalid_json', `The request body is not valid JSON: ${(error as Error).message}`);
  }
}

function checkRawType(req: IncomingMessage, types: string[] | undefined): void {
  if (!types || types.length === 0) return;
  const media = mediaType(req);
  if (!media || !types.some((t) => t === media.type || (t.endsWith('/*') && media.type.startsWith(t.slice(0, -1))))) {
    throw new AiplatError(
      'unsupported_media_type',
      `This route accepts ${types.join(', ')}, but the request says ${media ? media.type : 'nothing'} in Content-Type`,
    );
  }
}

export async function readRawBody(req: IncomingMessage, spec: Extract<BodySpec, { mode: 'raw' }>): Promise<Buffer> {
  checkRawType(req, spec.contentTypes);
  return readAll(req, limitOf(spec));
}

/** A stream of the body that errors with payload_too_large as soon as it passes the limit. */
export function rawBodyStream(req: IncomingMessage, spec: Extract<BodySpec, { mode: 'raw' }>): Readable {
  checkRawType(req, spec.contentTypes);
  const limit = limitOf(spec);
  checkDeclaredLength(req, limit);
  let seen = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > limit) done(tooLarge(limit));
      else done(null, chunk);
    },
  });
  req.on('aborted', () => counter.destroy(new AiplatError('bad_request', 'The client closed the connection before the body was complete')));
  return req.pipe(counter);
}

/** The parts of a multipart/form-data body, one at a time, never buffered whole. */
export async function* multipartParts(
  req: IncomingMessage,
  spec: Extract<BodySpec, { mode: 'multipart' }>,
): AsyncGenerator<MultipartField | MultipartFile> {
  const media = mediaType(req);
  if (!media || media.type !== 'multipart/form-data') {
    throw new AiplatError('unsupported_media_type', `This route accepts multipart/form-data, but the request says ${media ? media.type : 'nothing'}`);
  }
  const limit = limitOf(spec);
  checkDeclaredLength(req, limit);
  const queue: (MultipartField | MultipartFile | Error | null)[] = [];
  let wake: (() => void) | undefined;
  const push = (item: MultipartField | MultipartFile | Error | null) => {
    queue.push(item);
    wake?.();
  };
  let parser: busboy.Busboy;
  try {
    parser = busboy({ headers: req.headers, limits: { fileSize: limit, files: spec.maxFiles ?? 16, fieldSize: 64 * 1024 } });
  } catch (error) {
    throw new AiplatError('bad_request', `The multipart body cannot be read: ${(error as Error).message}`);
  }
  parser.on('field', (name, value) => push({ kind: 'field', name, value }));
  parser.on('file', (name, stream, info) => {
    stream.on('limit', () => stream.destroy(tooLarge(limit)));
    push({ kind: 'file', name, filename: info.filename ?? '', mimeType: info.mimeType, stream });
  });
  parser.on('filesLimit', () => push(new AiplatError('payload_too_large', `At most ${spec.maxFiles ?? 16} files per request`)));
  parser.on('error', (error: Error) => push(new AiplatError('bad_request', `The multipart body cannot be read: ${error.message}`)));
  parser.on('close', () => push(null));
  // The limit covers the whole body, also when it arrives chunked without a Content-Length.
  let total = 0;
  req.on('data', (chunk: Buffer) => {
    total += chunk.length;
    if (total > limit) {
      req.unpipe(parser);
      req.pause();
      push(tooLarge(limit));
    }
  });
  req.pipe(parser);
  for (;;) {
    if (queue.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    wake = undefined;
    const item = queue.shift();
    if (item === undefined) continue;
    if (item === null) return;
    if (item instanceof Error) throw item;
    yield item;
  }
}
