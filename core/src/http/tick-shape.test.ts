import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const probe = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/tick-shape-probe.ts');

/** The states of the ICs that build `process.nextTick`'s queue entries, after 20 forced full collections. */
function entryIcStates(mode: 'keep' | 'plain'): string[] {
  // V8 prints through C's stdio, which a pipe may not get in full before the process exits: a file does.
  const dir = mkdtempSync(path.join(tmpdir(), 'tick-shape-'));
  const file = path.join(dir, 'out.txt');
  const fd = openSync(file, 'w');
  try {
    execFileSync(process.execPath, ['--allow-natives-syntax', '--expose-gc', '--import', 'tsx', probe, mode], { stdio: ['ignore', fd, 'inherit'] });
    return [...readFileSync(file, 'utf8').matchAll(/DefineKeyedOwnPropertyInLiteral (\w+)/g)].map((m) => m[1]!);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('nextTick entries keep their hidden class (docs/adr/0014)', () => {
  it('with one entry kept alive, the ICs that build entries stay monomorphic across full collections', () => {
    const states = entryIcStates('keep');
    expect(states.length).toBeGreaterThan(0);
    expect(states.every((s) => s === 'MONOMORPHIC')).toBe(true);
  }, 30_000);

  it('without it they turn megamorphic (what the kept entry prevents; if Node stops doing this, the module can go)', () => {
    expect(entryIcStates('plain')).toContain('MEGAMORPHIC');
  }, 30_000);
});
