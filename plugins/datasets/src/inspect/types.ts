/**
 * The shapes the datasets plugin answers for `GET /versions/:vid/preview` and `…/validate`
 * (see the plugin's README), and the one error this library throws.
 */

/** What a file is, by its extension. A version counts its files per kind. */
export type FileKind = 'jsonl' | 'json' | 'csv' | 'parquet' | 'text' | 'image' | 'other';

export type Preview =
  | {
      kind: 'jsonl' | 'csv' | 'parquet'; path: string; columns: { name: string; type: string }[]; rows: Record<string, unknown>[];
      rowCount: number; rowCountExact: boolean; errors: { line: number; message: string }[];
    }
  | { kind: 'text'; path: string; lines: string[]; lineCount: number; rowCountExact: boolean }
  | { kind: 'image'; path: string; format: string; width: number; height: number; contentUrl: string }
  | { kind: 'other'; path: string; size: number; message: string };

/** The tabular previews: JSONL, CSV/TSV and Parquet. */
export type TablePreview = Extract<Preview, { kind: 'jsonl' | 'csv' | 'parquet' }>;

export interface ValidationReport {
  path: string; format: 'instruction' | 'chat'; detected: boolean; // detected: chosen by `auto`
  lines: number; valid: number; invalid: number;
  errors: { line: number; message: string }[]; // at most maxErrors, in line order
  errorsTruncated: boolean;
}

/**
 * A file that cannot be inspected as asked: not the format its name says, a broken image, a
 * training file whose format cannot be told. The message names the file by its dataset path and
 * says what is wrong, so a route can pass it on as is (typically as a 422).
 */
export class DatasetInspectError extends Error {
  details?: Record<string, unknown>;

  constructor(message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'DatasetInspectError';
    if (details) this.details = details;
  }
}
