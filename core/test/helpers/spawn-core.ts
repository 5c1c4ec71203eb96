import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const REPO_ROOT = path.resolve(import.meta.dirname, '../../..');

export interface SpawnedCore {
  child: ChildProcess;
  url: Promise<string>;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Run the real `npm start` entry point (node --import tsx core/src/main.ts) as its own process. */
export function spawnCore(env: Record<string, string | undefined>): SpawnedCore {
  const child = spawn(process.execPath, ['--import', 'tsx', 'core/src/main.ts'], {
    cwd: REPO_ROOT,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let resolveUrl: (url: string) => void;
  let rejectUrl: (error: Error) => void;
  const url = new Promise<string>((resolve, reject) => {
    resolveUrl = resolve;
    rejectUrl = reject;
  });
  url.catch(() => undefined);
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    const match = /"url":"(http:\/\/[^"]+)"[^\n]*aiplat core listening/.exec(out);
    if (match) resolveUrl(match[1]!);
  });
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      rejectUrl(new Error(`core exited (${code ?? signal}) before listening:\n${err}\n${out.slice(-2000)}`));
      resolve({ code, signal });
    }),
  );
  return { child, url, stdout: () => out, stderr: () => err, exited };
}
