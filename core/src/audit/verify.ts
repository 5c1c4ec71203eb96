import type { Knex } from 'knex';
import { COLUMN_LIST, GENESIS_HASH, recordHash, rowToRecord, type AuditRow } from './chain.js';
import type { AuditHead } from './head.js';

export interface VerifyResult {
  /** The chain is whole, and matches the head file when one is configured. */
  ok: boolean;
  /** Rows found good, in id order, before the first bad one (all of them when ok). */
  checked: number;
  /** The first id where the chain breaks: an edited or inserted row, or a missing one. */
  firstBadId: number | null;
  /** What is wrong at `firstBadId`. */
  problem?: string;
  /** The last id the check covered (the log's last row when it started). */
  lastId: number;
  /** With AIPLAT_AUDIT_HEAD_FILE: the head kept outside the database, and whether the log still holds it. */
  headFile?: { id: number | null; hash: string | null; matches: boolean; problem?: string };
}

export interface VerifyOptions {
  /** Rows read per query. */
  batchSize?: number;
  /** The head file's content (or why it cannot be read), when one is configured. */
  head?: AuditHead | { problem: string };
}

/**
 * Recompute the chain in id order, a batch at a time, up to the last row present when the check
 * starts. Ids run 1, 2, 3, … without gaps; each row's `prevHash` must be the hash of the row before
 * it (GENESIS_HASH for row 1) and its `hash` the hash of its canonical form. The first row that
 * breaks one of these rules, or the first id that is missing, is `firstBadId`.
 */
export async function verifyChain(db: Knex, options: VerifyOptions = {}): Promise<VerifyResult> {
  const batchSize = options.batchSize ?? 2000;
  const top = (await db('audit_log').max('id as max').first()) as { max: number | string | null } | undefined;
  const maxId = top?.max === null || top?.max === undefined ? 0 : Number(top.max);

  let expectedId = 1;
  let prevHash = GENESIS_HASH;
  let checked = 0;
  let bad: { id: number; problem: string } | undefined;
  let after: number | undefined;
  scan: for (;;) {
    const query = db('audit_log').select(COLUMN_LIST).where('id', '<=', maxId).orderBy('id').limit(batchSize);
    if (after !== undefined) query.where('id', '>', after);
    const rows = (await query) as AuditRow[];
    for (const row of rows) {
      const record = rowToRecord(row);
      if (record.id !== expectedId) {
        bad =
          record.id > expectedId
            ? { id: expectedId, problem: `row ${expectedId} is missing (the next row is ${record.id})` }
            : { id: record.id, problem: `row ${record.id} is out of sequence (expected row ${expectedId})` };
        break scan;
      }
      if (record.prevHash !== prevHash) {
        bad = { id: record.id, problem: 'its prevHash is not the hash of the row before it' };
        break scan;
      }
      if (recordHash(record) !== record.hash) {
        bad = { id: record.id, problem: 'its hash does not match its content' };
        break scan;
      }
      prevHash = record.hash;
      expectedId++;
      checked++;
    }
    if (rows.length < batchSize) break;
    after = Number(rows[rows.length - 1]!.id);
  }
  const lastId = expectedId - 1;
  // Rows may be missing at the end (the head file is what can tell).
  if (!bad && maxId > lastId) bad = { id: lastId + 1, problem: `row ${lastId + 1} is missing` };

  let headFile: VerifyResult['headFile'];
  const head = options.head;
  if (head && 'problem' in head) {
    headFile = { id: null, hash: null, matches: false, problem: head.problem };
  } else if (head) {
    const row = head.id === 0 ? undefined : ((await db('audit_log').where({ id: head.id }).first('hash')) as { hash: string } | undefined);
    const matches = head.id === 0 ? head.hash === GENESIS_HASH : row?.hash === head.hash;
    headFile = { id: head.id, hash: head.hash, matches };
    if (!matches) {
      headFile.problem = row || head.id === 0 ? `row ${head.id} has another hash than the head file's` : `row ${head.id}, the head file's, is not in the log`;
      if (!bad) {
        bad =
          head.id > maxId
            ? { id: maxId + 1, problem: `the log ends at row ${maxId} but the head file names row ${head.id}: rows were removed from its end` }
            : { id: head.id, problem: "its hash differs from the head file's: the log was rewritten up to this row" };
      }
    }
  }
  return {
    ok: bad === undefined && (headFile === undefined || headFile.matches),
    checked,
    firstBadId: bad?.id ?? null,
    ...(bad ? { problem: bad.problem } : {}),
    lastId: maxId,
    ...(headFile ? { headFile } : {}),
  };
}
