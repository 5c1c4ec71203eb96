import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateKeyPair, publicKeyOf } from '@aiplat/plugin-sdk/package';
import { readTrustedKeys } from './installer.js';

describe('AIPLAT_TRUSTED_KEYS', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-keys-'));
  const file = (name: string, content: string) => {
    const f = path.join(dir, name);
    writeFileSync(f, content);
    return f;
  };
  const key = publicKeyOf(generateKeyPair('acme'));

  it('takes a list, { keys: [...] }, or the one key `aiplat-plugin keygen` prints', () => {
    expect(readTrustedKeys(file('list.json', JSON.stringify([key])))).toEqual([key]);
    expect(readTrustedKeys(file('keys.json', JSON.stringify({ keys: [key] })))).toEqual([key]);
    expect(readTrustedKeys(file('one.json', JSON.stringify(key)))).toEqual([key]);
    expect(readTrustedKeys(undefined)).toEqual([]);
  });

  it('names the file and what is wrong', () => {
    expect(() => readTrustedKeys(file('bad.json', '{nope'))).toThrow(/bad\.json cannot be read as JSON/);
    expect(() => readTrustedKeys(file('shape.json', '{"a":1}'))).toThrow(/must hold a list of public keys/);
    expect(() => readTrustedKeys(file('short.json', JSON.stringify([{ publicKey: 'abc' }])))).toThrow(/key 1: publicKey must be the base64 of a 32-byte/);
  });
});
