/**
 * Images on one engine (the core's, or a remote host's): list, pull from a registry, import files
 * (`docker save` archives, or a root file system as a new image), remove. Errors are `AiplatError`s
 * with sentences a person can act on; the routes (routes.ts) call these.
 */
import { Transform, type Readable } from 'node:stream';
import { AiplatError } from '@aiplat/plugin-sdk';
import { engineError, engineMessage, statusOf, type Engine } from './engine.js';

/** name[:tag][@digest], loosely: it is looked up on the engine, so it must not be able to name another endpoint. */
export const IMAGE_REFERENCE_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._\\-/:@+]{0,254}$';
export const IMAGE_REFERENCE = new RegExp(IMAGE_REFERENCE_PATTERN);
/** An image id: `sha256:<64 hex>` or a prefix of at least 12 hex digits. */
export const IMAGE_ID = /^(sha256:)?[0-9a-f]{12,64}$/;

export function isImageReference(value: string): boolean {
  return IMAGE_REFERENCE.test(value) && !value.includes('..') && !value.includes('//');
}

export interface ImageSummary {
  id: string;
  tags: string[];
  sizeBytes: number;
  createdAt: string;
}

function summary(image: { Id: string; RepoTags?: string[] | null; Size?: number; Created?: number | string }): ImageSummary {
  const created = typeof image.Created === 'number' ? new Date(image.Created * 1000) : new Date(String(image.Created ?? 0));
  return {
    id: image.Id,
    tags: (image.RepoTags ?? []).filter((t) => t !== '<none>:<none>').sort(),
    sizeBytes: Number(image.Size ?? 0),
    createdAt: Number.isNaN(created.getTime()) ? new Date(0).toISOString() : created.toISOString(),
  };
}

function whereOf(engine: Engine): string {
  return engine.nodeId ? `the Docker host of node ${engine.nodeId} (${engine.where})` : `the Docker engine of the core's machine (${engine.where})`;
}

/** An engine that does not answer is `unavailable` (503); one that refuses says why. */
function unavailable(engine: Engine, error: unknown): AiplatError {
  return new AiplatError('unavailable', engineError(engine, error).message);
}

export async function listImages(engine: Engine): Promise<ImageSummary[]> {
  try {
    const images = await engine.docker.listImages({ all: false });
    return images.map(summary).sort((a, b) => (a.tags[0] ?? a.id).localeCompare(b.tags[0] ?? b.id));
  } catch (error) {
    throw unavailable(engine, error);
  }
}

export async function inspectImage(engine: Engine, reference: string): Promise<ImageSummary | undefined> {
  try {
    const info = await engine.docker.getImage(reference).inspect();
    return summary({ Id: info.Id, RepoTags: info.RepoTags, Size: info.Size, Created: info.Created });
  } catch (error) {
    if (statusOf(error) === 404) return undefined;
    throw unavailable(engine, error);
  }
}

/** What a progress stream (pull, load, import) said: its messages, and the first error in it. */
interface Progress {
  messages: string[];
  statuses: string[];
  error?: string;
}

/** Reads a stream of JSON lines to its end; `onActivity` hears every chunk. */
function readProgress(stream: Readable, onActivity?: () => void): Promise<Progress> {
  return new Promise((resolve, reject) => {
    const progress: Progress = { messages: [], statuses: [] };
    let rest = '';
    const take = (line: string) => {
      if (line.trim() === '') return;
      let item: { stream?: unknown; status?: unknown; error?: unknown; errorDetail?: { message?: unknown } };
      try {
        item = JSON.parse(line) as typeof item;
      } catch {
        progress.messages.push(line.trim());
        return;
      }
      const error = typeof item.errorDetail?.message === 'string' ? item.errorDetail.message : typeof item.error === 'string' ? item.error : undefined;
      if (error !== undefined) progress.error ??= error;
      if (typeof item.stream === 'string' && item.stream.trim() !== '') progress.messages.push(item.stream.trim());
      if (typeof item.status === 'string') progress.statuses.push(item.status.trim());
    };
    stream.on('data', (chunk: Buffer) => {
      onActivity?.();
      rest += chunk.toString('utf8');
      const lines = rest.split('\n');
      rest = lines.pop() ?? '';
      lines.forEach(take);
    });
    stream.once('end', () => {
      take(rest);
      resolve(progress);
    });
    stream.once('error', reject);
    stream.once('close', () => {
      // Closed without an end: cut off (a timeout, the engine went away).
      if (!stream.readableEnded) reject(new Error('the engine closed the stream before its end'));
    });
  });
}

export interface PullOptions {
  /** Give up when the engine reports no progress for this long. */
  stallMs: number;
}

/** `docker pull`: the image once it is all there, or a clear error and nothing tagged. */
export async function pullImage(engine: Engine, reference: string, options: PullOptions): Promise<ImageSummary> {
  const abort = new AbortController();
  let stalled = false;
  let timer: NodeJS.Timeout | undefined;
  let stream: Readable | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = true;
      abort.abort();
      stream?.destroy();
    }, options.stallMs);
  };
  arm();
  let progress: Progress;
  try {
    stream = (await engine.docker.pull(reference, { abortSignal: abort.signal })) as Readable;
    if (stalled) stream.destroy();
    progress = await readProgress(stream, arm);
  } catch (error) {
    if (stalled) {
      throw new AiplatError(
        'unavailable',
        `cannot pull ${reference} onto ${whereOf(engine)}: no progress for ${Math.round(options.stallMs / 1000)} s (is its registry reachable from there?); nothing was kept`,
      );
    }
    throw pullError(engine, reference, statusOf(error) === undefined && !(error as { json?: unknown }).json ? engineError(engine, error).message : engineMessage(error), statusOf(error));
  } finally {
    clearTimeout(timer);
  }
  if (progress.error !== undefined) throw pullError(engine, reference, progress.error, undefined);
  const image = await inspectImage(engine, reference);
  if (!image) throw new AiplatError('unavailable', `pulling ${reference} onto ${whereOf(engine)} ended, but the engine does not have it (it said: ${progress.statuses.at(-1) ?? 'nothing'})`);
  return image;
}

function pullError(engine: Engine, reference: string, said: string, status: number | undefined): AiplatError {
  const where = whereOf(engine);
  const offline = `If ${engine.nodeId ? 'that host' : 'this machine'} reaches no registry, save the image on a machine that does (docker save ${reference} | gzip > image.tar.gz) and import the file: POST .../images/import`;
  if (/no such host|dial tcp|lookup |i\/o timeout|connection refused|network is unreachable|TLS handshake timeout|Client\.Timeout|context deadline exceeded|no route to host|temporary failure in name resolution|server misbehaving/i.test(said)) {
    return new AiplatError('unavailable', `cannot pull ${reference} onto ${where}: its registry cannot be reached from there (${said}). ${offline}`);
  }
  if (/manifest unknown|not found|does not exist|pull access denied|unauthorized|authentication required|denied/i.test(said) || status === 404) {
    return new AiplatError('not_found', `cannot pull ${reference} onto ${where}: the registry has no such image, or wants credentials (${said})`);
  }
  if (/invalid reference format|invalid repository name|invalid tag/i.test(said) || status === 400) {
    return new AiplatError('bad_request', `cannot pull ${reference}: not a valid image reference (${said})`);
  }
  return new AiplatError('unavailable', `cannot pull ${reference} onto ${where}: ${said}. ${offline}`);
}

export interface ImportOptions {
  /** Bytes the file may have at most. */
  maxBytes: number;
}

/**
 * `docker load` of a `docker save` archive (tar, or gzip/bzip2/xz of one): the images it held.
 * With `reference`, `docker import` of a root file system tarball as that image instead.
 */
export async function importImages(engine: Engine, body: Readable, options: ImportOptions & { reference?: string }): Promise<ImageSummary[]> {
  let bodyError: unknown;
  let seen = 0;
  const counted = body.pipe(
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        seen += chunk.length;
        if (seen > options.maxBytes) {
          done(new AiplatError('payload_too_large', `the file is larger than ${options.maxBytes} bytes, the most this plugin accepts (its importMaxGiB setting)`));
        } else done(null, chunk);
      },
    }),
  );
  body.once('error', (error) => {
    bodyError ??= error;
    counted.destroy(error);
  });
  counted.once('error', (error) => {
    bodyError ??= error;
  });
  const what = options.reference ? `the root file system tarball as ${options.reference}` : 'the docker save archive';
  let progress: Progress;
  try {
    const stream = options.reference
      ? ((await engine.docker.importImage(counted as unknown as string, { repo: repoOf(options.reference), tag: tagOf(options.reference) })) as unknown as Readable)
      : ((await engine.docker.loadImage(counted as unknown as string, { quiet: true })) as unknown as Readable);
    progress = await readProgress(stream);
  } catch (error) {
    if (bodyError) throw asAiplat(bodyError);
    if (statusOf(error) === undefined) throw unavailable(engine, error);
    throw new AiplatError('bad_request', `cannot import ${what} into ${whereOf(engine)}: ${corruptHint(engineMessage(error), options.reference)}`);
  }
  if (bodyError) throw asAiplat(bodyError);
  if (progress.error !== undefined) throw new AiplatError('bad_request', `cannot import ${what} into ${whereOf(engine)}: ${corruptHint(progress.error, options.reference)}`);
  const names = options.reference
    ? [progress.statuses.findLast((s) => /^sha256:[0-9a-f]{64}$/.test(s)) ?? options.reference]
    : progress.messages.flatMap((m) => m.split('\n')).flatMap((line) => /^Loaded image(?: ID)?: (\S+)$/.exec(line.trim())?.[1] ?? []);
  if (names.length === 0) {
    throw new AiplatError('bad_request', `cannot import ${what} into ${whereOf(engine)}: the engine loaded no image from it (it said: ${[...progress.messages, ...progress.statuses].join('; ') || 'nothing'})`);
  }
  const images = new Map<string, ImageSummary>();
  for (const name of names) {
    const image = await inspectImage(engine, name);
    if (image) images.set(image.id, image);
  }
  return [...images.values()];
}

function asAiplat(error: unknown): AiplatError {
  if (error instanceof AiplatError || (error as { name?: string }).name === 'AiplatError') return error as AiplatError;
  return new AiplatError('bad_request', `the file could not be read: ${(error as Error).message}`);
}

function corruptHint(said: string, reference: string | undefined): string {
  if (/tar|unexpected EOF|invalid|gzip|manifest|json|archive|no such file|magic/i.test(said)) {
    return reference
      ? `${said} (it must be a tar of a root file system, e.g. tar -C rootfs -c . | gzip, or a gzip of one)`
      : `${said} (it must be what docker save writes, e.g. docker save image:tag | gzip > image.tar.gz)`;
  }
  return said;
}

function repoOf(reference: string): string {
  const slash = reference.lastIndexOf('/');
  const colon = reference.lastIndexOf(':');
  return colon > slash ? reference.slice(0, colon) : reference;
}

function tagOf(reference: string): string {
  const slash = reference.lastIndexOf('/');
  const colon = reference.lastIndexOf(':');
  return colon > slash ? reference.slice(colon + 1) : 'latest';
}

/**
 * `docker rmi`: by id, the image with all its tags; by reference, that tag (the image goes with its
 * last tag). Refused (409) while a container, running or not, uses it, or another image builds on it.
 */
export async function removeImage(engine: Engine, idOrReference: string): Promise<void> {
  const image = await inspectImage(engine, idOrReference);
  if (!image) throw new AiplatError('not_found', `no image ${idOrReference} on ${whereOf(engine)}`);
  let users: { Names?: string[]; Id: string; ImageID?: string }[];
  try {
    users = (await engine.docker.listContainers({ all: true })).filter((c) => c.ImageID === image.id);
  } catch (error) {
    throw unavailable(engine, error);
  }
  const byId = IMAGE_ID.test(idOrReference);
  if (users.length > 0 && (byId || image.tags.length <= 1)) {
    const names = users.map((c) => (c.Names?.[0] ?? c.Id.slice(0, 12)).replace(/^\//, ''));
    throw new AiplatError('conflict', `image ${idOrReference} is used by ${names.length === 1 ? 'container' : 'containers'} ${names.join(', ')}: remove ${names.length === 1 ? 'it' : 'them'} first`, {
      containers: names,
    });
  }
  try {
    // By id with several tags the engine wants force; no container uses it (checked above).
    await engine.docker.getImage(byId ? image.id : idOrReference).remove({ force: byId && image.tags.length > 1, noprune: false });
  } catch (error) {
    const status = statusOf(error);
    if (status === 404) throw new AiplatError('not_found', `no image ${idOrReference} on ${whereOf(engine)}`);
    if (status === 409) throw new AiplatError('conflict', `image ${idOrReference} cannot be removed: ${engineMessage(error)}`);
    if (status === undefined) throw unavailable(engine, error);
    throw new AiplatError('conflict', `image ${idOrReference} cannot be removed: ${engineMessage(error)}`);
  }
}
