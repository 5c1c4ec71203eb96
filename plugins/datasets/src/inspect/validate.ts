/**
 * Checks a training file line by line against one of the two LLM fine-tuning formats:
 *
 * - instruction: `{ "instruction": string, "output": string, "input"?: string, …other keys }`;
 * - chat: `{ "messages": [{ "role": "system"|"user"|"assistant"|"tool", "content": string }, …] }`
 *   with at least one user and one assistant message.
 *
 * The checks are written by hand rather than as a JSON schema: ajv's messages
 * (`/messages/1/role must be equal to one of the allowed values`) are worse than what a person
 * fixing line 12 of a file wants to read. Required strings must not be empty (or only whitespace):
 * an example with an empty answer trains nothing.
 *
 * The file is streamed, so a 50 GB file takes time but no memory. A `.json` file that holds one
 * array of records (the Alpaca style) is the exception: it is parsed whole, up to a size cap, and
 * its "lines" are the array's items.
 */
import { open, readFile, stat } from 'node:fs/promises';
import { MAX_LINE_BYTES, scanLines } from './lines.js';
import { jsonType, megabytes, parseMessage } from './jsonl.js';
import { DatasetInspectError, type ValidationReport } from './types.js';

export type TrainingFormat = 'instruction' | 'chat';

/** A `.json` file holding one array is parsed whole only up to this size. */
export const JSON_ARRAY_MAX_BYTES = 100 * 1024 * 1024;

/** How many problems of one line its message lists before "and N more". */
const PROBLEMS_PER_LINE = 5;

const ROLES = ['system', 'user', 'assistant', 'tool'];

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function described(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return jsonType(value);
}

/** Problems with a required (or, when `optional`, possibly absent) non-empty string field. */
function checkString(record: Record<string, unknown>, key: string, label: string, problems: string[], optional = false): void {
  if (!(key in record) || record[key] === undefined) {
    if (!optional) problems.push(`${label} is missing`);
    return;
  }
  const value = record[key];
  if (typeof value !== 'string') problems.push(`${label} must be a string (got ${jsonType(value)})`);
  else if (!optional && value.trim() === '') problems.push(`${label} must not be empty`);
}

/** What is wrong with one instruction record; empty when nothing. */
export function checkInstruction(value: unknown): string[] {
  if (!isObject(value)) return [`must be a JSON object (got ${jsonType(value)})`];
  const problems: string[] = [];
  checkString(value, 'instruction', '"instruction"', problems);
  checkString(value, 'input', '"input"', problems, true);
  checkString(value, 'output', '"output"', problems);
  return problems;
}

/**
 * What is wrong with one chat record; empty when nothing. An assistant message that only calls
 * tools (`tool_calls`, as in OpenAI's format) may go without content.
 */
export function checkChat(value: unknown): string[] {
  if (!isObject(value)) return [`must be a JSON object (got ${jsonType(value)})`];
  const messages = value.messages;
  if (messages === undefined) return ['"messages" is missing'];
  if (!Array.isArray(messages)) return [`"messages" must be an array (got ${jsonType(messages)})`];
  if (messages.length === 0) return ['"messages" must not be empty'];
  const problems: string[] = [];
  const roles = new Set<string>();
  messages.forEach((message: unknown, index) => {
    const label = `messages[${index}]`;
    if (!isObject(message)) {
      problems.push(`${label} must be an object (got ${jsonType(message)})`);
      return;
    }
    const role = message.role;
    if (role === undefined) problems.push(`${label}.role is missing`);
    else if (typeof role !== 'string' || !ROLES.includes(role)) problems.push(`${label}.role must be one of ${ROLES.join(', ')} (got ${described(role)})`);
    else roles.add(role);
    const toolCalls = role === 'assistant' && Array.isArray(message.tool_calls) && message.tool_calls.length > 0;
    if (toolCalls && (message.content === undefined || message.content === null || message.content === '')) return;
    checkString(message, 'content', `${label}.content`, problems);
  });
  if (!roles.has('user')) problems.push('"messages" has no user message');
  if (!roles.has('assistant')) problems.push('"messages" has no assistant message');
  return problems;
}

const CHECKS: Record<TrainingFormat, (value: unknown) => string[]> = { instruction: checkInstruction, chat: checkChat };

/** The format a record is in, when it says: `messages` → chat, `instruction` → instruction. */
function formatOf(value: unknown): TrainingFormat | undefined {
  if (!isObject(value)) return undefined;
  if ('messages' in value) return 'chat';
  if ('instruction' in value) return 'instruction';
  return undefined;
}

/** The first byte that is not whitespace (or a UTF-8 byte order mark), or undefined for an empty file. */
async function firstByte(file: string): Promise<string | undefined> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(64 * 1024);
    for (let position = 0; ;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) return undefined;
      for (let i = 0; i < bytesRead; i++) {
        const b = buffer[i]!;
        if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue;
        if (position + i < 3 && (b === 0xef || b === 0xbb || b === 0xbf)) continue;
        return String.fromCharCode(b);
      }
      position += bytesRead;
    }
  } finally {
    await handle.close();
  }
}

/** Collects per-record results into a report, keeping at most `maxErrors` messages. */
class Tally {
  lines = 0;
  valid = 0;
  invalid = 0;
  errors: { line: number; message: string }[] = [];
  errorsTruncated = false;

  constructor(private readonly maxErrors: number, private readonly unit: string) {}

  record(line: number, problems: string[]): void {
    this.lines++;
    if (problems.length === 0) {
      this.valid++;
      return;
    }
    this.invalid++;
    if (this.errors.length >= this.maxErrors) {
      this.errorsTruncated = true;
      return;
    }
    const shown = problems.slice(0, PROBLEMS_PER_LINE).join('; ');
    const more = problems.length > PROBLEMS_PER_LINE ? `; and ${problems.length - PROBLEMS_PER_LINE} more` : '';
    this.errors.push({ line, message: `${this.unit} ${line}: ${shown}${more}` });
  }
}

/** Parses one line into a value, or the problem that stops it being checked. */
function parseLine(text: string, truncated: boolean, bytes: number): { value: unknown } | { problem: string } {
  if (truncated) return { problem: `line is ${megabytes(bytes)}, over the ${megabytes(MAX_LINE_BYTES)} that is checked` };
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return { problem: `not JSON (${parseMessage(error, text)})` };
  }
}

async function detectInLines(file: string): Promise<{ format?: TrainingFormat; line?: number; keys?: string[] }> {
  let found: { format?: TrainingFormat; line?: number; keys?: string[] } = {};
  await scanLines(file, {
    count: false,
    visit: (line) => {
      if (line.blank || line.truncated) return true;
      let value: unknown;
      try {
        value = JSON.parse(line.text);
      } catch {
        return true;
      }
      if (!isObject(value)) return true;
      found = { format: formatOf(value), line: line.number, keys: Object.keys(value).slice(0, 10) };
      return false;
    },
  });
  return found;
}

function undecided(path: string, found: { line?: number; keys?: string[] }, unit: string): DatasetInspectError {
  if (found.line === undefined) {
    return new DatasetInspectError(`${path}: cannot tell its format: it holds no JSON object`, { path });
  }
  return new DatasetInspectError(
    `${path}: cannot tell its format: the first object (${unit} ${found.line}) has neither "messages" (chat) nor "instruction" (instruction); its keys are ${found.keys!.map((key) => JSON.stringify(key)).join(', ') || 'none'}`,
    { path, line: found.line, keys: found.keys },
  );
}

export async function validateFile(
  file: string,
  options: { path: string; format: 'auto' | TrainingFormat; maxErrors?: number },
): Promise<ValidationReport> {
  const { path } = options;
  const lower = path.toLowerCase();
  if (!lower.endsWith('.jsonl') && !lower.endsWith('.json') && !lower.endsWith('.ndjson')) {
    throw new DatasetInspectError(`${path} cannot be validated: only JSONL (.jsonl) and JSON (.json) files hold training records`, { path });
  }
  if (options.format !== 'auto' && options.format !== 'instruction' && options.format !== 'chat') {
    throw new DatasetInspectError(`unknown format ${JSON.stringify(options.format)}: use auto, instruction or chat`, { format: options.format });
  }
  const maxErrors = Math.max(0, options.maxErrors ?? 1000);

  // A .json file that opens with `[` is one array, not lines.
  if (lower.endsWith('.json') && (await firstByte(file)) === '[') {
    const { size } = await stat(file);
    if (size > JSON_ARRAY_MAX_BYTES) {
      throw new DatasetInspectError(
        `${path} is one JSON array of ${megabytes(size)}, over the ${megabytes(JSON_ARRAY_MAX_BYTES)} that can be validated: convert it to JSONL (one record per line)`,
        { path, size },
      );
    }
    let items: unknown;
    const text = (await readFile(file, 'utf8')).replace(/^\uFEFF/, '');
    try {
      items = JSON.parse(text);
    } catch (error) {
      throw new DatasetInspectError(`${path} is not valid JSON: ${parseMessage(error, text)}`, { path });
    }
    if (!Array.isArray(items)) throw new DatasetInspectError(`${path} is not valid JSON: it starts like an array but is not one`, { path });
    let format = options.format;
    if (format === 'auto') {
      const index = items.findIndex(isObject);
      const first = items[index];
      const decided = formatOf(first);
      if (!decided) throw undecided(path, index === -1 ? {} : { line: index + 1, keys: Object.keys(first as object).slice(0, 10) }, 'item');
      format = decided;
    }
    const tally = new Tally(maxErrors, 'item');
    items.forEach((item, index) => tally.record(index + 1, CHECKS[format](item)));
    return report(path, format, options.format === 'auto', tally);
  }

  let format = options.format;
  if (format === 'auto') {
    const found = await detectInLines(file);
    if (!found.format) throw undecided(path, found, 'line');
    format = found.format;
  }
  const check = CHECKS[format];
  const tally = new Tally(maxErrors, 'line');
  await scanLines(file, {
    visit: (line) => {
      if (line.blank) return true;
      const parsed = parseLine(line.text, line.truncated, line.bytes);
      tally.record(line.number, 'problem' in parsed ? [parsed.problem] : check(parsed.value));
      return true;
    },
  });
  return report(path, format, options.format === 'auto', tally);
}

function report(path: string, format: TrainingFormat, detected: boolean, tally: Tally): ValidationReport {
  return {
    path,
    format,
    detected,
    lines: tally.lines,
    valid: tally.valid,
    invalid: tally.invalid,
    errors: tally.errors,
    errorsTruncated: tally.errorsTruncated,
  };
}
