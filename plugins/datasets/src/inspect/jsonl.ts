/**
 * JSONL preview: the first rows parsed, their columns with JSON type names, and an exact row count
 * from one streaming pass over the whole file. A malformed line becomes an entry in `errors`, never
 * a failed preview: the point of a preview is to see what is wrong with a file.
 */
import { jsonErrorPosition } from './jsonerror.js';
import { MAX_LINE_BYTES, scanLines } from './lines.js';
import type { TablePreview } from './types.js';

/** What the previewed rows may hold in all, so that 200 rows of 9 MB each do not take 2 GB. */
export const PREVIEW_BUDGET_BYTES = 64 * 1024 * 1024;

/** The JSON type name of a value: string, number, integer, boolean, object, array or null. */
export function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value; // string, boolean, object
}

const TYPE_ORDER = ['integer', 'number', 'string', 'boolean', 'object', 'array', 'null'];

/**
 * Joins the types a column was seen with into one name ('string', 'integer|null'), in a fixed
 * order; integers among other numbers are just 'number'.
 */
export function joinTypes(types: Set<string>): string {
  if (types.has('number')) types.delete('integer');
  return [...types].sort((a, b) => TYPE_ORDER.indexOf(a) - TYPE_ORDER.indexOf(b)).join('|');
}

/** Columns in the order their keys first appear, each with the types seen in `rows`. */
export function inferColumns(rows: Record<string, unknown>[]): { name: string; type: string }[] {
  const seen = new Map<string, Set<string>>();
  for (const row of rows) {
    for (const [key, value] of Object.entries(row)) {
      let types = seen.get(key);
      if (!types) seen.set(key, (types = new Set()));
      types.add(jsonType(value));
    }
  }
  return [...seen].map(([name, types]) => ({ name, type: joinTypes(types) }));
}

/**
 * What JSON.parse said about `text`, kept short (V8 may quote the input) and always with the
 * position of the fault.
 */
export function parseMessage(error: unknown, text: string): string {
  let message = error instanceof Error ? error.message : String(error);
  if (message.length > 200) message = `${message.slice(0, 200)}…`;
  if (!/position \d+/.test(message)) {
    const position = jsonErrorPosition(text);
    if (position >= 0) message += ` at position ${position}`;
  }
  return message;
}

/** Size in MB for messages: 10485760 → "10 MB". */
export function megabytes(bytes: number): string {
  return `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MB`;
}

export async function previewJsonl(
  file: string,
  options: { path: string; limit: number; maxLineBytes?: number },
): Promise<TablePreview> {
  const maxLineBytes = options.maxLineBytes ?? MAX_LINE_BYTES;
  const rows: Record<string, unknown>[] = [];
  const errors: { line: number; message: string }[] = [];
  let read = 0; // non-blank lines looked at for the preview: rows and errors
  let budget = PREVIEW_BUDGET_BYTES;
  const scan = await scanLines(file, {
    maxLineBytes,
    visit: (line) => {
      if (read >= options.limit) return false;
      if (line.blank) return true;
      read++;
      if (line.truncated) {
        errors.push({ line: line.number, message: `line is ${megabytes(line.bytes)}, over the ${megabytes(maxLineBytes)} a preview reads; not parsed` });
      } else {
        try {
          const value: unknown = JSON.parse(line.text);
          if (value !== null && typeof value === 'object' && !Array.isArray(value)) rows.push(value as Record<string, unknown>);
          else errors.push({ line: line.number, message: `not a JSON object (${jsonType(value)})` });
        } catch (error) {
          errors.push({ line: line.number, message: `not JSON (${parseMessage(error, line.text)})` });
        }
      }
      budget -= line.bytes;
      if (budget <= 0) {
        errors.push({ line: line.number, message: `preview stopped after ${megabytes(PREVIEW_BUDGET_BYTES)} of rows` });
        return false;
      }
      return read < options.limit;
    },
  });
  return {
    kind: 'jsonl',
    path: options.path,
    columns: inferColumns(rows),
    rows,
    rowCount: scan.nonBlank,
    rowCountExact: true,
    errors,
  };
}
