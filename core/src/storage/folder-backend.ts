import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '@aiplat/plugin-sdk';
import { isObjectMeta, type BackendListPage, type BackendWrite, type ObjectMeta, type StorageBackend } from './backend.js';
import { KeyedMutex } from './keyed-mutex.js';
import { validateKey } from './keys.js';

/*
 * The folder backend: objects are files under `<dataDir>/storage/`.
 *
 * Layout. A namespace is a folder (`core/`, `plugins/<id>/`). Inside it, key `a/b/model.bin` is
 * the file `a+/b+/model.bin`, with its metadata beside it in `model.bin@meta.json`. Folders get a
 * `+` (a character keys cannot hold) so that, as in S3, the keys `a` and `a/b` can both exist;
 * files keep their exact name, so a materialised path keeps the key's extension. Temp files live
 * in `.tmp/`, on the same file system, so a rename publishes them atomically.
 *
 * Why metadata in a sidecar file and not in the database: the object and its description live
 * and go together (a copied or restored storage folder stays consistent, and there is no commit
 * across a database and a file system to get wrong); storage needs no database connection, so a
 * plugin can use it inside a request handler, where the global connection is off limits; and it is
 * the shape the S3 backend has anyway (metadata stored on the object).
 *
 * Visibility. An object exists when its metadata file exists. A put streams the content to a temp
 * file and fsyncs it, writes and fsyncs the metadata to a temp file, then (under the key's lock)
 * removes the old metadata, renames the content into place, renames the metadata into place and
 * fsyncs the folder. A reader therefore never sees metadata that does not describe the content
 * beside it; an overwrite makes the old version disappear just before the new one appears.
 * A delete removes the metadata first. A file without metadata is invisible (and removed on the
 * next delete or put of its key).
 *
 * Crash recovery (at start, before use). Whatever is in `.tmp/` is a write that did not finish.
 * A metadata temp file still there names its key: when that key has no metadata (the crash hit
 * between removing the old metadata and publishing the new one), the content file is removed so
 * nothing half-committed lingers. Then `.tmp/` is emptied. No walk of the whole tree is needed.
 *
 * The data folder is locked to one process (`db/lock.ts`), so in-process key locks are enough.
 */

const TMP_DIR = '.tmp';
const DIR_MARK = '+';
const META_SUFFIX = '@meta.json';
const TMP_META_SUFFIX = '.meta.json';
/** Bigger chunks than Node's 64 KiB default: fewer syscalls and hash updates for large blobs. */
const CHUNK = 1 << 20;
const NAMESPACE = /^(core|plugins\/[a-z][a-z0-9-]{1,38}[a-z0-9])$/;

interface StoredMeta extends ObjectMeta {
  v: 1;
  namespace: string;
  key: string;
}

function errno(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** Make a rename, unlink or new entry in `dir` durable. Platforms that cannot fsync a folder skip it. */
async function fsyncDir(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (error) {
    if (!['EISDIR', 'EINVAL', 'EPERM', 'EBADF', 'EACCES'].includes(errno(error) ?? '')) throw error;
  } finally {
    await handle?.close();
  }
}

async function writeDurably(file: string, text: string): Promise<void> {
  const handle = await open(file, 'wx', 0o644);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function removeFile(file: string): Promise<boolean> {
  try {
    await rm(file);
    return true;
  } catch (error) {
    if (errno(error) === 'ENOENT' || errno(error) === 'ENOTDIR') return false;
    throw error;
  }
}

function isMeta(value: unknown): value is StoredMeta {
  return isObjectMeta(value);
}

export class FolderBackend implements StorageBackend {
  readonly kind = 'folder';
  private readonly locks = new KeyedMutex();
  private readonly tmpDir: string;

  constructor(
    /** `<dataDir>/storage` */
    readonly root: string,
    private readonly logger: Logger,
  ) {
    this.tmpDir = path.join(root, TMP_DIR);
  }

  private namespaceDir(namespace: string): string {
    if (!NAMESPACE.test(namespace)) throw new Error(`storage: "${namespace}" is not a namespace`);
    return path.join(this.root, ...namespace.split('/'));
  }

  private folderOf(namespace: string, segments: string[]): string {
    return path.join(this.namespaceDir(namespace), ...segments.map((s) => s + DIR_MARK));
  }

  private paths(namespace: string, key: string): { dir: string; data: string; meta: string } {
    const segments = key.split('/');
    const name = segments.pop()!;
    const dir = this.folderOf(namespace, segments);
    return { dir, data: path.join(dir, name), meta: path.join(dir, name + META_SUFFIX) };
  }

  async recover(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true });
    const leftovers = await readdir(this.tmpDir);
    let rolledBack = 0;
    for (const name of leftovers.filter((n) => n.endsWith(TMP_META_SUFFIX))) {
      let stored: unknown;
      try {
        stored = JSON.parse(await readFile(path.join(this.tmpDir, name), 'utf8'));
      } catch {
        continue; // never completed, so the commit never began
      }
      const { namespace, key } = (stored ?? {}) as Partial<StoredMeta>;
      if (typeof namespace !== 'string' || !NAMESPACE.test(namespace) || typeof key !== 'string') continue;
      try {
        validateKey(key);
      } catch {
        continue;
      }
      const target = this.paths(namespace, key);
      if (!(await this.readMeta(target.meta)) && (await removeFile(target.data))) rolledBack++;
    }
    for (const name of leftovers) await rm(path.join(this.tmpDir, name), { recursive: true, force: true });
    if (leftovers.length > 0) {
      this.logger.warn({ tempFiles: leftovers.length, rolledBack }, 'storage: removed files of writes a crash interrupted');
    }
  }

  async put(namespace: string, key: string, write: BackendWrite): Promise<ObjectMeta> {
    const target = this.paths(namespace, key);
    const id = randomUUID();
    const tmpData = path.join(this.tmpDir, `${id}.data`);
    const tmpMeta = path.join(this.tmpDir, `${id}${TMP_META_SUFFIX}`);
    // `flush`: fsync before the file is closed, and the pipeline resolves only once it is.
    const out = createWriteStream(tmpData, { flags: 'wx', mode: 0o644, flush: true, highWaterMark: CHUNK });
    try {
      await pipeline(write.body, out);
      const meta = write.seal();
      const stored: StoredMeta = { v: 1, namespace, key, ...meta };
      await writeDurably(tmpMeta, JSON.stringify(stored));
      await fsyncDir(this.tmpDir); // recovery relies on finding it after a crash in the commit
      await this.locks.run(target.data, async () => {
        // The old version, if any, disappears first, durably: it must never be seen with the new content.
        if (await removeFile(target.meta)) await fsyncDir(target.dir);
        try {
          await this.renameInto(tmpData, target.data, target.dir);
          await rename(tmpMeta, target.meta);
          await fsyncDir(target.dir);
        } catch (error) {
          if (!(await this.readMeta(target.meta))) await removeFile(target.data);
          throw error;
        }
      });
      return meta;
    } catch (error) {
      // A source that fails at once can reject the pipeline before the file is even opened: wait
      // until the stream has opened and closed it, or the file would appear after its removal.
      if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
      await rm(tmpData, { force: true });
      await rm(tmpMeta, { force: true });
      throw error;
    }
  }

  /** Rename into `dir`, creating it; a concurrent delete may prune an empty folder in between, so retry. */
  private async renameInto(from: string, to: string, dir: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      await this.makeDir(dir);
      try {
        await rename(from, to);
        return;
      } catch (error) {
        if (errno(error) !== 'ENOENT' || attempt >= 5) throw error;
      }
    }
  }

  private async makeDir(dir: string): Promise<void> {
    const first = await mkdir(dir, { recursive: true });
    if (first === undefined) return;
    // New folders: make their entries durable, from the first one created down to `dir`.
    for (let current = dir; ; current = path.dirname(current)) {
      await fsyncDir(path.dirname(current));
      if (current === first || current === path.dirname(current)) break;
    }
  }

  private async readMeta(file: string): Promise<StoredMeta | undefined> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if (errno(error) === 'ENOENT' || errno(error) === 'ENOTDIR') return undefined;
      throw error;
    }
    try {
      const value: unknown = JSON.parse(text);
      if (isMeta(value)) return value;
    } catch {
      /* reported below */
    }
    this.logger.warn({ file }, 'storage: unreadable metadata file; the object is treated as absent');
    return undefined;
  }

  private toMeta(stored: StoredMeta): ObjectMeta {
    const meta: ObjectMeta = { size: stored.size, sha256: stored.sha256, createdAt: stored.createdAt };
    if (stored.contentType !== undefined) meta.contentType = stored.contentType;
    return meta;
  }

  async get(namespace: string, key: string): Promise<{ meta: ObjectMeta; stream: Readable } | undefined> {
    const target = this.paths(namespace, key);
    // Metadata and content are taken together under the lock; once open, the file handle keeps
    // this version's content even if a later put replaces the file.
    return this.locks.run(target.data, async () => {
      const stored = await this.readMeta(target.meta);
      if (!stored) return undefined;
      let handle;
      try {
        handle = await open(target.data, 'r');
      } catch (error) {
        if (errno(error) === 'ENOENT') return undefined;
        throw error;
      }
      return { meta: this.toMeta(stored), stream: handle.createReadStream({ highWaterMark: CHUNK }) };
    });
  }

  async stat(namespace: string, key: string): Promise<ObjectMeta | undefined> {
    const stored = await this.readMeta(this.paths(namespace, key).meta);
    return stored && this.toMeta(stored);
  }

  async list(namespace: string, prefix: string, options: { limit: number; after?: string }): Promise<BackendListPage> {
    const segments = prefix.split('/');
    const partial = segments.pop()!;
    const items: BackendListPage['items'] = [];
    const base = segments.length > 0 ? `${segments.join('/')}/` : '';
    await this.walk(this.folderOf(namespace, segments), base, partial, options.after, items, options.limit + 1);
    return { items: items.slice(0, options.limit), more: items.length > options.limit };
  }

  /**
   * Depth-first, in key order. Within a folder, an object `n` sorts as `base + n` and a subfolder
   * `d` as `base + d + "/"`: every key inside it starts with that, so sorting these and descending
   * in order yields all keys in order. Subfolders entirely before `after` are skipped unread.
   */
  private async walk(dir: string, base: string, partial: string, after: string | undefined, out: BackendListPage['items'], want: number): Promise<void> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (error) {
      if (errno(error) === 'ENOENT' || errno(error) === 'ENOTDIR') return;
      throw error;
    }
    const entries: Array<{ sort: string; name: string; folder: boolean }> = [];
    for (const name of names) {
      if (name.endsWith(META_SUFFIX)) entries.push({ sort: base + name.slice(0, -META_SUFFIX.length), name: name.slice(0, -META_SUFFIX.length), folder: false });
      else if (name.endsWith(DIR_MARK)) entries.push({ sort: `${base}${name.slice(0, -1)}/`, name: name.slice(0, -1), folder: true });
    }
    const wanted = entries.filter((e) => e.name.startsWith(partial)).sort((a, b) => (a.sort < b.sort ? -1 : a.sort > b.sort ? 1 : 0));
    for (const entry of wanted) {
      if (out.length >= want) return;
      if (entry.folder) {
        if (after !== undefined && after > entry.sort && !after.startsWith(entry.sort)) continue;
        await this.walk(path.join(dir, entry.name + DIR_MARK), entry.sort, '', after, out, want);
      } else {
        if (after !== undefined && entry.sort <= after) continue;
        const stored = await this.readMeta(path.join(dir, entry.name + META_SUFFIX));
        if (stored) out.push({ key: entry.sort, meta: this.toMeta(stored) });
      }
    }
  }

  async delete(namespace: string, key: string): Promise<boolean> {
    const target = this.paths(namespace, key);
    return this.locks.run(target.data, async () => {
      const existed = await removeFile(target.meta); // invisible from here on
      await removeFile(target.data); // an orphan content file (no metadata) goes too
      if (existed) await fsyncDir(target.dir);
      // Remove the folders this left empty, up to the namespace's own folder. A put racing for
      // one of them recreates it (renameInto).
      const stop = this.namespaceDir(namespace);
      for (let dir = target.dir; dir !== stop && dir.startsWith(stop + path.sep); dir = path.dirname(dir)) {
        try {
          await rmdir(dir);
        } catch {
          break;
        }
      }
      return existed;
    });
  }

  async materialise(namespace: string, key: string): Promise<string | undefined> {
    const target = this.paths(namespace, key);
    return (await this.readMeta(target.meta)) ? target.data : undefined;
  }
}
