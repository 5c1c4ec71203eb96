/**
 * CSV/TSV preview with `csv-parse`'s streaming parser: the header row names the columns, the first
 * rows come back as objects of strings (as written: CSV has no types, and "007" must stay "007"),
 * each column gets the type its previewed values suggest, and the row count comes from parsing the
 * whole file (quoted fields may hold newlines, so counting lines would be wrong).
 *
 * A file the parser gives up on (an unclosed quote, a record over the size cap) keeps what was read
 * before it: the error is reported with its line, and the count is marked inexact.
 */
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { parse } from 'csv-parse';
import { MAX_LINE_BYTES } from './lines.js';
import { megabytes } from './jsonl.js';
import type { TablePreview } from './types.js';

const INTEGER = /^[-+]?\d+$/;
const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^[-+]?(inf|infinity|nan)$/i;
const BOOLEAN = /^(true|false)$/i;

/** The type a column's previewed values suggest: integer, number, boolean or string (empty cells are ignored). */
export function csvColumnType(values: string[]): string {
  const present = values.filter((value) => value.trim() !== '').map((value) => value.trim());
  if (present.length === 0) return 'string';
  if (present.every((value) => INTEGER.test(value))) return 'integer';
  if (present.every((value) => NUMBER.test(value))) return 'number';
  if (present.every((value) => BOOLEAN.test(value))) return 'boolean';
  return 'string';
}

/** Header names made usable as keys: blanks become `column_N`, repeats get `_2`, `_3`. */
function columnNames(header: string[]): string[] {
  const used = new Set<string>();
  return header.map((raw, index) => {
    const base = raw.trim() === '' ? `column_${index + 1}` : raw;
    let name = base;
    for (let n = 2; used.has(name); n++) name = `${base}_${n}`;
    used.add(name);
    return name;
  });
}

export async function previewCsv(
  file: string,
  options: { path: string; limit: number; maxRecordBytes?: number },
): Promise<TablePreview> {
  const tsv = options.path.toLowerCase().endsWith('.tsv');
  const maxRecordBytes = options.maxRecordBytes ?? MAX_LINE_BYTES;
  const parser = parse({
    delimiter: tsv ? '\t' : ',',
    // TSV has no quoting as a rule; a stray `"` in a cell must not swallow the rest of the file.
    quote: tsv ? false : '"',
    bom: true,
    skip_empty_lines: true,
    relax_column_count: true,
    relax_quotes: true,
    max_record_size: maxRecordBytes,
  });
  let names: string[] | undefined;
  const rows: Record<string, unknown>[] = [];
  const errors: { line: number; message: string }[] = [];
  let rowCount = 0;
  let exact = true;
  try {
    await pipeline(createReadStream(file), parser, async (records: AsyncIterable<string[]>) => {
      for await (const record of records) {
        if (!names) {
          names = columnNames(record);
          continue;
        }
        rowCount++;
        if (rows.length < options.limit) {
          const row: Record<string, unknown> = {};
          record.forEach((value, index) => {
            row[names![index] ?? `column_${index + 1}`] = value;
          });
          rows.push(row);
        }
      }
    });
  } catch (error) {
    const csvError = error as Error & { code?: string; lines?: number };
    if (!csvError.code?.startsWith('CSV_')) throw error;
    exact = false;
    const message = csvError.code === 'CSV_MAX_RECORD_SIZE'
      ? `a record is over ${megabytes(maxRecordBytes)}; reading stopped there`
      : `${csvError.message}; reading stopped there`;
    errors.push({ line: csvError.lines ?? parser.info.lines, message });
  }
  const header = names ?? [];
  const extra = new Set<string>();
  for (const row of rows) for (const key of Object.keys(row)) if (!header.includes(key)) extra.add(key);
  return {
    kind: 'csv',
    path: options.path,
    columns: [...header, ...extra].map((name) => ({
      name,
      type: csvColumnType(rows.map((row) => (typeof row[name] === 'string' ? (row[name] as string) : ''))),
    })),
    rows,
    rowCount,
    rowCountExact: exact,
    errors,
  };
}
