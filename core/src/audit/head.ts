import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Knex } from 'knex';
import type { Logger } from '@aiplat/plugin-sdk';
import { GENESIS_HASH } from './chain.js';

/** The last row of the chain, as kept outside the database (`AIPLAT_AUDIT_HEAD_FILE`). */
export interface AuditHead {
  /** 0 for an empty log. */
  id: number;
  hash: string;
  /** When that row was written (null for an empty log). */
  at: string | null;
}

/** The database's current head: its last row, or `{ id: 0, hash: GENESIS_HASH }` when empty. */
export async function latestHead(db: Knex): Promise<AuditHead> {
  const row = (await db('audit_log').orderBy('id', 'desc').first('id', 'hash', 'at')) as { id: number | string; hash: string; at: Date | string } | undefined;
  if (!row) return { id: 0, hash: GENESIS_HASH, at: null };
  return { id: Number(row.id), hash: row.hash, at: new Date(row.at).toISOString() };
}

/** The head file's content, or why it cannot be used. */
export function readHeadFile(file: string): AuditHead | { problem: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { problem: code === 'ENOENT' ? `the head file ${file} does not exist` : `the head file ${file} cannot be read: ${(error as Error).message}` };
  }
  try {
    const value = JSON.parse(text) as Partial<AuditHead>;
    if (!Number.isSafeInteger(value.id) || (value.id as number) < 0 || typeof value.hash !== 'string' || !/^[0-9a-f]{64}$/.test(value.hash)) {
      return { problem: `the head file ${file} does not hold { id, hash, at }` };
    }
    return { id: value.id as number, hash: value.hash, at: typeof value.at === 'string' ? value.at : null };
  } catch {
    return { problem: `the head file ${file} is not JSON` };
  }
}

/** Replace the head file atomically: write a temporary file beside it, flush it to disk, rename it over. */
export async function writeHeadFile(file: string, head: AuditHead): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  const handle = await open(temp, 'w', 0o640);
  try {
    await handle.writeFile(`${JSON.stringify(head)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/**
 * Exports the chain head to a file outside the database every `intervalSeconds` and at stop, so
 * `GET /api/v1/audit/verify` can tell a log rewritten (or cut short) from its end back.
 */
export class AuditHeadExporter {
  private timer: NodeJS.Timeout | undefined;
  private last: string | undefined;
  private refused: string | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly options: { db: () => Knex; file: string; intervalSeconds: number; logger: Logger },
  ) {}

  get file(): string {
    return this.options.file;
  }

  /** Export now, then every interval. */
  async start(): Promise<void> {
    await this.exportNow();
    this.timer = setInterval(() => void this.exportNow(), this.options.intervalSeconds * 1000);
    this.timer.unref();
  }

  /**
   * Write the current head (skipped when it has not changed since the last write). A head file the
   * log no longer extends (its row gone or changed), or one that cannot be read, is evidence: it is
   * left as it is, an error is logged, and verify reports the mismatch. Never throws.
   */
  exportNow(): Promise<void> {
    this.running = this.running.then(async () => {
      const { file, logger } = this.options;
      try {
        const db = this.options.db();
        const head = await latestHead(db);
        const text = JSON.stringify(head);
        if (text === this.last) return;
        const previous = existsSync(file) ? readHeadFile(file) : undefined;
        let problem: string | undefined;
        if (previous && 'problem' in previous) problem = previous.problem;
        else if (previous && previous.id > 0) {
          const row = (await db('audit_log').where({ id: previous.id }).first('hash')) as { hash: string } | undefined;
          if (row?.hash !== previous.hash) problem = `row ${previous.id} ${row ? 'has another hash now' : 'is gone'}`;
        }
        if (problem) {
          if (problem !== this.refused) {
            logger.error({ file, problem }, `the audit log does not extend the head in ${file} (${problem}): not overwriting it; GET /api/v1/audit/verify reports the break`);
          }
          this.refused = problem;
          return;
        }
        this.refused = undefined;
        await writeHeadFile(file, head);
        this.last = text;
      } catch (error) {
        logger.error({ err: error, file }, 'cannot export the audit chain head');
      }
    });
    return this.running;
  }

  /** Stop the timer and write the final head (call before the database closes). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.exportNow();
  }
}
