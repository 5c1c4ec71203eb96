/**
 * Parquet preview with `hyparquet`: the footer gives the schema and the exact row count without
 * reading any data; the first rows are then read from the first row group(s) only (hyparquet
 * fetches just the byte ranges it needs from the file).
 *
 * Values are made JSON-safe for the route: INT64 arrives as BigInt, timestamps as Date, binary as
 * bytes. Snappy, gzip, Brotli, ZSTD and LZ4 pages decode (`hyparquet-compressors`); a file whose
 * rows still cannot be decoded shows its columns and count, with the reason in `errors`.
 */
import { open } from 'node:fs/promises';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import type { FileMetaData, SchemaElement, SchemaTree } from 'hyparquet';
import { DatasetInspectError, type TablePreview } from './types.js';

const MAGIC = 'PAR1';

/** Checks the `PAR1` magic at both ends, so that a wrong file fails with a plain message. */
async function checkMagic(file: string, path: string): Promise<void> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    if (size < 12) throw new DatasetInspectError(`${path} is not a Parquet file: it is ${size} bytes long`, { path, size });
    const head = Buffer.alloc(4);
    const tail = Buffer.alloc(4);
    await handle.read(head, 0, 4, 0);
    await handle.read(tail, 0, 4, size - 4);
    if (head.toString('latin1') !== MAGIC || tail.toString('latin1') !== MAGIC) {
      throw new DatasetInspectError(
        `${path} is not a Parquet file: it does not start and end with "${MAGIC}"`,
        { path, head: head.toString('hex'), tail: tail.toString('hex') },
      );
    }
  } finally {
    await handle.close();
  }
}

/**
 * A column's type as Parquet describes it: the physical type, with the logical (or older
 * converted) type after it: `INT64`, `BYTE_ARRAY (STRING)`, `INT64 (TIMESTAMP, MICROS)`, and for
 * nested columns `LIST`, `MAP` or `STRUCT`.
 */
export function parquetType(element: SchemaElement, hasChildren: boolean): string {
  const logical = element.logical_type;
  let detail: string | undefined;
  if (logical) {
    if (logical.type === 'DECIMAL') detail = `DECIMAL(${logical.precision}, ${logical.scale})`;
    else if (logical.type === 'TIMESTAMP' || logical.type === 'TIME') detail = `${logical.type}, ${logical.unit}`;
    else if (logical.type === 'INTEGER') detail = `${logical.isSigned ? 'INT' : 'UINT'}${logical.bitWidth}`;
    else detail = logical.type;
  } else if (element.converted_type) {
    detail = element.converted_type === 'UTF8' ? 'STRING' : element.converted_type;
  }
  if (hasChildren) {
    if (detail === 'LIST') return 'LIST';
    return detail === 'MAP' || detail === 'MAP_KEY_VALUE' ? 'MAP' : 'STRUCT';
  }
  const physical = element.type ?? 'UNKNOWN';
  // INTEGER logical types just restate the physical one unless narrower or unsigned.
  if (detail === undefined || detail === `INT${physical === 'INT32' ? 32 : 64}`) return physical;
  return `${physical} (${detail})`;
}

/** Turns what hyparquet decodes into plain JSON values. */
export function jsonSafe(value: unknown): unknown {
  if (typeof value === 'bigint') {
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value.toString();
  }
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value); // NaN, Infinity: not JSON
  if (Array.isArray(value)) return value.map(jsonSafe);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, jsonSafe(inner)]));
  }
  return value;
}

export async function previewParquet(file: string, options: { path: string; limit: number }): Promise<TablePreview> {
  await checkMagic(file, options.path);
  const buffer = await asyncBufferFromFile(file);
  let metadata: FileMetaData;
  try {
    metadata = await parquetMetadataAsync(buffer);
  } catch (error) {
    throw new DatasetInspectError(`${options.path} is not a Parquet file: its footer cannot be read (${(error as Error).message})`, { path: options.path });
  }
  const tree: SchemaTree = parquetSchema(metadata);
  const columns = tree.children.map((child) => ({ name: child.element.name, type: parquetType(child.element, child.children.length > 0) }));
  const rowCount = Number(metadata.num_rows);
  const errors: { line: number; message: string }[] = [];
  let rows: Record<string, unknown>[] = [];
  const rowEnd = Math.min(Math.max(0, Math.floor(options.limit)), rowCount);
  if (rowEnd > 0) {
    try {
      const read = await parquetReadObjects({ file: buffer, metadata, rowStart: 0, rowEnd, useOffsetIndex: true, compressors });
      rows = read.map((row) => jsonSafe({ ...row }) as Record<string, unknown>);
    } catch (error) {
      // line 0: about the file, not one row.
      errors.push({ line: 0, message: `rows could not be read: ${(error as Error).message}` });
    }
  }
  return { kind: 'parquet', path: options.path, columns, rows, rowCount, rowCountExact: true, errors };
}
