/**
 * `previewFile`: a look at a file of a dataset version, by its kind. Every reader streams or reads
 * a bounded head, so a preview of a many-GB file costs one pass over it at most and little memory.
 */
import { stat } from 'node:fs/promises';
import { previewCsv } from './csv.js';
import { previewImage } from './image.js';
import { previewJsonl } from './jsonl.js';
import { fileKind } from './kind.js';
import { previewParquet } from './parquet.js';
import { previewText } from './text.js';
import type { Preview } from './types.js';

export interface PreviewOptions {
  /** The file's path in the dataset: it names the file in messages and decides its kind. */
  path: string;
  /** How many rows (or lines) to return. */
  limit: number;
}

/**
 * Previews the local file `file`. A `.json` file is shown as text: it may be one array of any size,
 * which cannot be read in rows without parsing it whole.
 */
export async function previewFile(file: string, options: PreviewOptions): Promise<Preview> {
  const limit = Math.max(0, Math.floor(options.limit));
  const { path } = options;
  switch (fileKind(path)) {
    case 'jsonl':
      return previewJsonl(file, { path, limit });
    case 'csv':
      return previewCsv(file, { path, limit });
    case 'parquet':
      return previewParquet(file, { path, limit });
    case 'json':
    case 'text':
      return previewText(file, { path, limit });
    case 'image':
      return previewImage(file, { path });
    default: {
      const { size } = await stat(file);
      return { kind: 'other', path, size, message: 'No preview for this kind of file: download it to look inside.' };
    }
  }
}
