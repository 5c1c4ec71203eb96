/** The kind of a file, from its extension only: cheap, and the same answer for every version. */
import type { FileKind } from './types.js';

const KINDS: Record<string, FileKind> = {
  jsonl: 'jsonl', ndjson: 'jsonl',
  json: 'json',
  csv: 'csv', tsv: 'csv',
  parquet: 'parquet',
  txt: 'text', md: 'text', text: 'text', log: 'text',
  png: 'image', jpg: 'image', jpeg: 'image', gif: 'image', webp: 'image', bmp: 'image',
};

/** `data/train.JSONL` → 'jsonl'; a name without a known extension → 'other'. */
export function fileKind(path: string): FileKind {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  if (dot <= 0) return 'other'; // no extension, or a dot file such as `.gitignore`
  return KINDS[name.slice(dot + 1).toLowerCase()] ?? 'other';
}
