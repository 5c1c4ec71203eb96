import { cpSync, existsSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { embeddedEngineVersion, initEmbeddedCluster } from '@aiplat/core';

/**
 * `initdb` of the embedded database takes seconds; a fresh data folder copied from a
 * once-initialised template takes milliseconds. The template is made once per machine and
 * engine version, atomically (concurrent test workers race on the rename; the loser's copy is dropped).
 */
export async function embeddedTemplate(): Promise<string> {
  const template = path.join(os.tmpdir(), `aiplat-pglite-template-${embeddedEngineVersion()}`);
  if (existsSync(path.join(template, 'PG_VERSION'))) return template;
  const building = mkdtempSync(path.join(os.tmpdir(), 'aiplat-pglite-building-'));
  await initEmbeddedCluster(building);
  try {
    renameSync(building, template);
  } catch {
    rmSync(building, { recursive: true, force: true });
  }
  return template;
}

/** A data folder whose embedded database is already initialised. */
export async function preparedDataDir(): Promise<string> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-test-'));
  cpSync(await embeddedTemplate(), path.join(dataDir, 'pgdata'), { recursive: true });
  return dataDir;
}
