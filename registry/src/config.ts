/**
 * The registry's configuration, from the environment. Every problem is reported at start, all at
 * once, naming the variable and what it should hold.
 */
import path from 'node:path';

export interface RegistryConfig {
  port: number;
  host: string;
  /** Absolute path of the data folder (the static mirror). */
  dataDir: string;
  /** Absolute path of the publishers file. */
  publishersFile: string;
  /** Largest package body a publish accepts, in bytes. */
  maxUploadBytes: number;
  /** Base URL the registry is reached at (for the npm endpoint's tarball links); the request's own origin when unset. */
  publicUrl: string | undefined;
  logLevel: string;
}

export class RegistryConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`The registry's configuration is not valid:\n  - ${problems.join('\n  - ')}`);
    this.name = 'RegistryConfigError';
  }
}

export const DEFAULT_PORT = 8090;
export const DEFAULT_MAX_UPLOAD_BYTES = 512 * 1024 ** 2;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3 };

/** `512MiB`, `1GiB`, `200MB`, `1048576`: a byte count, or undefined when the text is none of these. */
export function parseByteSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return undefined;
  const unit = UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
}

export function loadRegistryConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): RegistryConfig {
  const problems: string[] = [];
  const value = (name: string) => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };

  let port = DEFAULT_PORT;
  const portText = value('REGISTRY_PORT');
  if (portText !== undefined) {
    port = Number(portText);
    if (!/^\d+$/.test(portText) || port > 65535) problems.push(`REGISTRY_PORT must be a port number from 0 to 65535, not "${portText}"`);
  }

  const host = value('REGISTRY_HOST') ?? '0.0.0.0';
  if (/\s|\/|:\/\//.test(host)) problems.push(`REGISTRY_HOST must be a host name or IP address to listen on (such as 0.0.0.0 or 127.0.0.1), not "${host}"`);

  const dataDir = path.resolve(cwd, value('REGISTRY_DATA_DIR') ?? '.aiplat-registry');
  const publishersFile = path.resolve(cwd, value('REGISTRY_PUBLISHERS') ?? path.join(dataDir, 'publishers.json'));

  let maxUploadBytes = DEFAULT_MAX_UPLOAD_BYTES;
  const maxText = value('REGISTRY_MAX_UPLOAD');
  if (maxText !== undefined) {
    const parsed = parseByteSize(maxText);
    if (parsed === undefined) problems.push(`REGISTRY_MAX_UPLOAD must be a size such as 512MiB, 2GiB or 1048576 (bytes), not "${maxText}"`);
    else maxUploadBytes = parsed;
  }

  let publicUrl = value('REGISTRY_PUBLIC_URL');
  if (publicUrl !== undefined) {
    try {
      const url = new URL(publicUrl);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
      if (url.search || url.hash) throw new Error('query');
      publicUrl = url.href.replace(/\/+$/, '');
    } catch {
      problems.push(`REGISTRY_PUBLIC_URL must be the http(s) URL the registry is reached at, without query (such as https://registry.example.com), not "${publicUrl}"`);
    }
  }

  const logLevel = value('LOG_LEVEL') ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, not "${logLevel}"`);

  if (problems.length > 0) throw new RegistryConfigError(problems);
  return { port, host, dataDir, publishersFile, maxUploadBytes, publicUrl, logLevel };
}
