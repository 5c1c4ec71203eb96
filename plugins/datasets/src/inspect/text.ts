/** Text preview: the first lines as they are, and the file's line count from one streaming pass. */
import { scanLines } from './lines.js';
import type { Preview } from './types.js';

/** A preview line is cut here: enough to read, not a 1 GB "line" sent to a browser. */
export const TEXT_LINE_MAX_BYTES = 64 * 1024;

export async function previewText(file: string, options: { path: string; limit: number }): Promise<Preview> {
  const lines: string[] = [];
  const scan = await scanLines(file, {
    maxLineBytes: TEXT_LINE_MAX_BYTES,
    visit: (line) => {
      if (lines.length >= options.limit) return false;
      lines.push(line.truncated ? `${line.text}…` : line.text);
      return lines.length < options.limit;
    },
  });
  return { kind: 'text', path: options.path, lines, lineCount: scan.lines, rowCountExact: true };
}
