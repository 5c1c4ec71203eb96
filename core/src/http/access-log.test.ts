import { execFileSync } from 'node:child_process';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { Redactor } from '../secrets/redactor.js';
import { AccessLog, type AccessEntry } from './access-log.js';

/** A pino logger on a destination that records each write it is handed. */
function recorded(level: pino.Level = 'info') {
  const writes: string[] = [];
  const logger = pino({ level, base: { service: 'aiplat' } }, { write: (chunk: string) => void writes.push(chunk) });
  return { logger, writes, lines: () => writes.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const entry = (i: number, extra: Partial<AccessEntry> = {}): AccessEntry => ({ requestId: `r-${i}`, method: 'GET', url: `/api/v1/health?i=${i}`, status: 200, ms: 0.25, user: undefined, ...extra });
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('AccessLog', () => {
  it('hands the lines of one turn of the event loop to the destination in one write, in order', async () => {
    const { logger, writes, lines } = recorded();
    const log = new AccessLog(logger);
    log.write(entry(1, { user: 'ada' }));
    log.write(entry(2));
    log.write(entry(3, { status: 404 }));
    expect(writes).toHaveLength(0);
    await turn();
    expect(writes).toHaveLength(1);
    expect(lines().map((l) => l.reqId)).toEqual(['r-1', 'r-2', 'r-3']);
    expect(lines()[0]).toMatchObject({ level: 30, service: 'aiplat', method: 'GET', url: '/api/v1/health?i=1', status: 200, ms: 0.25, user: 'ada', msg: 'request' });
    expect(lines()[1]).not.toHaveProperty('user');
    expect(typeof lines()[0]!.time).toBe('number');
    // Nothing waits now: the next turn writes nothing more.
    await turn();
    expect(writes).toHaveLength(1);
  });

  it('writes 32 waiting lines at once, and the next ones at the end of the turn', async () => {
    const { logger, writes, lines } = recorded();
    const log = new AccessLog(logger);
    for (let i = 1; i <= 33; i++) log.write(entry(i));
    expect(writes).toHaveLength(1);
    expect(writes[0]!.split('\n').filter(Boolean)).toHaveLength(32);
    await turn();
    expect(writes).toHaveLength(2);
    expect(lines().map((l) => l.reqId)).toEqual(Array.from({ length: 33 }, (_, i) => `r-${i + 1}`));
  });

  it('flushes on demand, redacts known secrets from the lines, and writes nothing below its level', async () => {
    const redactor = new Redactor();
    redactor.addSecret('hunter2-very-secret');
    const { logger, writes, lines } = recorded();
    const log = new AccessLog(logger, redactor);
    log.flush();
    expect(writes).toHaveLength(0);
    log.write(entry(1, { url: '/api/v1/health?token=hunter2-very-secret' }));
    log.flush();
    expect(writes).toHaveLength(1);
    expect(writes[0]).not.toContain('hunter2-very-secret');
    expect(lines()[0]!.url).toBe('/api/v1/health?token=••••');

    const quiet = recorded('warn');
    new AccessLog(quiet.logger).write(entry(2));
    await turn();
    expect(quiet.writes).toHaveLength(0);
  });

  it('hands on the lines still waiting when the process exits', () => {
    const script = path.join(import.meta.dirname, '..', '..', 'test', 'fixtures', 'access-log-exit.ts');
    const out = execFileSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', cwd: path.join(import.meta.dirname, '..', '..', '..') });
    const reqIds = out.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { reqId: string }).reqId);
    expect(reqIds).toEqual(['before-exit-1', 'before-exit-2']);
  });
});
