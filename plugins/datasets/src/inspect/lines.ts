/**
 * Reading a file line by line without ever holding more than one line of it, and that line only up
 * to a cap. Dataset files can be many GB and one "line" can be a whole file without newlines, so
 * `readline` (which buffers a line whatever its length) will not do.
 *
 * The scanner works on bytes: it splits on `\n` with `Buffer.indexOf`, decodes a line only while
 * the caller still wants text, and afterwards only counts lines (and non-blank lines), which costs
 * a few hundred milliseconds per GB and no memory.
 */
import { createReadStream } from 'node:fs';

/** The default cap on one line's bytes: longer lines are cut there (and flagged). */
export const MAX_LINE_BYTES = 10 * 1024 * 1024;

/** One line, as handed to the visitor. */
export interface Line {
  /** 1-based physical line number (blank lines count). */
  number: number;
  /** The line's text without its `\n` / `\r\n`, cut at `maxLineBytes` when `truncated`. */
  text: string;
  /** Whether the line has anything other than spaces, tabs and `\r`. */
  blank: boolean;
  /** True when the line was longer than `maxLineBytes`: `text` is its head only. */
  truncated: boolean;
  /** The line's full length in bytes (without the newline). */
  bytes: number;
}

export interface ScanOptions {
  /** Called for each line while it returns true; after it returns false (or never, when absent) lines are only counted. */
  visit?: (line: Line) => boolean;
  /** Keep counting to the end once `visit` is done (default true); false stops reading at once. */
  count?: boolean;
  /** Cap on the bytes kept of one line (default MAX_LINE_BYTES). */
  maxLineBytes?: number;
}

export interface ScanResult {
  /** Lines in the file; a last line without `\n` counts, an empty tail after the last `\n` does not. */
  lines: number;
  /** Lines with something other than whitespace in them. */
  nonBlank: number;
  /** Whether the whole file was read (false when `count: false` stopped it early). */
  complete: boolean;
}

const NEWLINE = 0x0a;

/** Whether `bytes[start, end)` holds anything but space, tab and carriage return. */
function hasContent(bytes: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const b = bytes[i];
    if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return true;
  }
  return false;
}

/** Streams `file` and hands its lines to `options.visit`; see ScanOptions. */
export async function scanLines(file: string, options: ScanOptions = {}): Promise<ScanResult> {
  const maxLineBytes = options.maxLineBytes ?? MAX_LINE_BYTES;
  const countAll = options.count ?? true;
  let visiting = options.visit !== undefined;
  let lines = 0;
  let nonBlank = 0;
  // The line being read: its byte length so far, whether it has content, and (while visiting) its kept head.
  let bytes = 0;
  let content = false;
  let parts: Buffer[] = [];
  let kept = 0;

  // `direct`: the line's kept bytes when it lies whole in one chunk (decoded in place, no copy).
  const finishLine = (direct?: Buffer): boolean => {
    lines++;
    if (content) nonBlank++;
    let goOn = true;
    if (visiting) {
      let text = (direct ?? Buffer.concat(parts, kept)).toString('utf8');
      if (text.endsWith('\r')) text = text.slice(0, -1);
      if (lines === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a UTF-8 byte order mark
      visiting = options.visit!({ number: lines, text, blank: !content, truncated: bytes > maxLineBytes, bytes });
      goOn = visiting || countAll;
    }
    bytes = 0;
    content = false;
    parts = [];
    kept = 0;
    return goOn;
  };

  const stream = createReadStream(file, { highWaterMark: 1024 * 1024 });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let pos = 0;
    while (pos <= chunk.length) {
      const newline = chunk.indexOf(NEWLINE, pos);
      const end = newline === -1 ? chunk.length : newline;
      if (!content && hasContent(chunk, pos, end)) content = true;
      let direct: Buffer | undefined;
      if (visiting && kept < maxLineBytes && end > pos) {
        const take = Math.min(end - pos, maxLineBytes - kept);
        if (newline !== -1 && parts.length === 0) direct = chunk.subarray(pos, pos + take);
        else {
          // A copy, so that a kept head does not pin the whole 1 MB chunk.
          parts.push(Buffer.from(chunk.subarray(pos, pos + take)));
          kept += take;
        }
      }
      bytes += end - pos;
      if (newline === -1) break;
      if (!finishLine(direct)) {
        stream.destroy();
        return { lines, nonBlank, complete: false };
      }
      pos = newline + 1;
    }
  }
  if (bytes > 0) finishLine();
  return { lines, nonBlank, complete: true };
}
