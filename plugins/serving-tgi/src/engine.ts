/**
 * Whether TGI can run here. Only in its container: on `local` it cannot; on `docker` the image must
 * be on the engine (`docker image inspect`, when a docker CLI exists).
 */
import { execFile } from 'node:child_process';
import type { EngineStatus } from '@aiplat-plugins/serving/api';
import { LOCAL_REFUSAL } from './options.js';

export function dockerImage(image: string, docker = 'docker'): Promise<EngineStatus> {
  return new Promise((resolve) => {
    execFile(docker, ['image', 'inspect', '--format', '{{.Id}}', image], { timeout: 15_000, encoding: 'utf8' }, (error, _stdout, stderr) => {
      if ((error as NodeJS.ErrnoException | null)?.code === 'ENOENT') {
        resolve({ available: false, version: null, reason: `no docker CLI on this machine to look for the image ${image}` });
        return;
      }
      if (error) {
        const why = String(stderr).trim().split('\n').pop() ?? '';
        resolve({
          available: false,
          version: null,
          reason: /no such image/i.test(why)
            ? `the image ${image} is not on the Docker engine: pull it (docker pull ${image}, or the executor's image page)`
            : `docker could not inspect the image ${image}: ${why || 'no answer'}`,
        });
        return;
      }
      const tag = image.includes(':') ? image.slice(image.lastIndexOf(':') + 1) : null;
      resolve({ available: true, version: tag && !tag.includes('/') ? tag : null, reason: null });
    });
  });
}

export async function tgiEngine(executor: string, image: string, docker?: string): Promise<EngineStatus> {
  if (executor === 'local') return { available: false, version: null, reason: LOCAL_REFUSAL };
  if (executor !== 'docker') return { available: false, version: null, reason: `TGI runs only in its container on the docker executor, not on "${executor}"` };
  return dockerImage(image, docker);
}
