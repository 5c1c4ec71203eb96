import { randomUUID } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const INSTANCE_ID = /^[A-Za-z0-9-]{8,64}$/;

/**
 * The id of the core instance that owns this data folder, kept in `<dataDir>/instance-id` and made
 * at first start. Every process of this core has it; the data-folder lock guarantees that at most
 * one process holds it at a time, so a process that starts and finds work recorded under its own id
 * knows that the process which recorded it is dead. Replicas have their own data folders, hence
 * their own ids. Call it only while holding the data-folder lock.
 */
export function dataDirInstanceId(dataDir: string): string {
  const file = path.join(dataDir, 'instance-id');
  try {
    const stored = readFileSync(file, 'utf8').trim();
    if (INSTANCE_ID.test(stored)) return stored;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const id = randomUUID();
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, `${id}\n`, { mode: 0o644 });
  renameSync(temp, file);
  return id;
}
