/**
 * Shared helpers of the aiplat-plugin command: errors with exit codes, output, file helpers.
 */
import { chmodSync, existsSync, lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** A failure the user can act on: printed without a stack, exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Exit codes: 0 done, 1 the command failed, 2 the command line was wrong. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export interface Output {
  /** Results (what a script reads). */
  out(line: string): void;
  /** Progress, warnings and notes. */
  info(line: string): void;
  warn(line: string): void;
}

export const consoleOutput: Output = {
  out: (line) => process.stdout.write(`${line}\n`),
  info: (line) => process.stderr.write(`${line}\n`),
  warn: (line) => process.stderr.write(`warning: ${line}\n`),
};

/** 1234567 → "1.2 MB". */
export function formatSize(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** Read and parse a JSON file; the error names the file. */
export function readJson<T = unknown>(file: string, what = 'file'): T {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CliError(code === 'ENOENT' ? `${what} ${file} does not exist` : `cannot read ${what} ${file}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new CliError(`${what} ${file} is not valid JSON: ${(error as Error).message}`);
  }
}

/** Write a file only its owner can read (0600), refusing to replace an existing one unless `force`. */
export function writePrivateFile(file: string, content: string, force: boolean): void {
  try {
    writeFileSync(file, content, { mode: 0o600, flag: force ? 'w' : 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new CliError(`${file} already exists: pass --force to replace it (the key in it is lost unless you kept a copy)`);
    throw new CliError(`cannot write ${file}: ${(error as Error).message}`);
  }
  // A replaced file keeps its old mode: make it private either way.
  chmodSync(file, 0o600);
}

/** Every regular file under `dir` (relative, `/`-separated, sorted); `filter` may skip names. */
export function listFiles(dir: string, skip: (rel: string, isDir: boolean) => boolean = () => false): string[] {
  const found: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(dir, rel)).sort()) {
      const child = rel ? `${rel}/${name}` : name;
      const stat = lstatSync(path.join(dir, child));
      if (skip(child, stat.isDirectory())) continue;
      if (stat.isDirectory()) walk(child);
      else found.push(child);
    }
  };
  if (existsSync(dir)) walk('');
  return found;
}

/** Total bytes of the files under `dir`. */
export function folderSize(dir: string): { files: number; bytes: number } {
  let bytes = 0;
  const files = listFiles(dir);
  for (const file of files) bytes += lstatSync(path.join(dir, file)).size;
  return { files: files.length, bytes };
}

/** `path.relative`, shown as `./x` for display, or absolute when outside `from`. */
export function shown(file: string, from = process.cwd()): string {
  const rel = path.relative(from, file);
  return rel === '' ? '.' : rel.startsWith('..') || path.isAbsolute(rel) ? file : rel;
}
