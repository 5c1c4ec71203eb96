// Every string of the shell and the SDK's web part exists in both languages, and every error code
// of the catalog has a translation (the shell translates errors by code).
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { errorCatalog } from '@aiplat/plugin-sdk';
import { sdkMessages } from '../../plugin-sdk/web/messages.js';
import { sdkErrorMessages } from '../../plugin-sdk/web/error-messages.js';

type Tree = { [key: string]: string | Tree };

/** Every leaf of a message tree as `a.b.c`, with its value. */
function leaves(tree: Tree, prefix = ''): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, value] of Object.entries(tree)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (typeof value === 'string') out.set(name, value);
    else for (const [k, v] of leaves(value, name)) out.set(k, v);
  }
  return out;
}

function expectSameKeys(label: string, en: Tree, zh: Tree) {
  const a = leaves(en);
  const b = leaves(zh);
  expect([...a.keys()].filter((k) => !b.has(k)), `${label}: keys missing in zh-CN`).toEqual([]);
  expect([...b.keys()].filter((k) => !a.has(k)), `${label}: keys missing in en`).toEqual([]);
  for (const [key, value] of [...a, ...b]) expect(value.trim(), `${label}: ${key} is empty`).not.toBe('');
  // Placeholders ({name}) must match, or a translation drops a value.
  for (const [key, value] of a) {
    const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    expect(placeholders(b.get(key)!), `${label}: ${key} placeholders`).toEqual(placeholders(value));
  }
  // A zh-CN tree that is a copy of the English one is not a translation.
  const untranslated = [...a].filter(([key, value]) => /[a-z]{4,}/.test(value) && b.get(key) === value && !/^[A-Za-z0-9 .:/-]+$/.test(value.replace(/aiplat|Redis|PostgreSQL|API|JSON|ID/g, '')));
  expect(untranslated.length / Math.max(1, a.size), `${label}: share of strings left in English`).toBeLessThan(0.05);
}

describe('translations', () => {
  it('the SDK web part has every string in en and zh-CN', () => {
    expectSameKeys('sdk', sdkMessages.en as unknown as Tree, sdkMessages['zh-CN'] as unknown as Tree);
    expectSameKeys('sdk errors', sdkErrorMessages.en as unknown as Tree, sdkErrorMessages['zh-CN'] as unknown as Tree);
  });

  it('every error code of the catalog is translated, and the network failure too', () => {
    for (const code of [...Object.keys(errorCatalog), 'network']) {
      expect(sdkErrorMessages.en.errors, code).toHaveProperty(code);
      expect(sdkErrorMessages['zh-CN'].errors, code).toHaveProperty(code);
    }
  });

  it('each message file of the shell has the same keys in en and zh-CN', async () => {
    const dir = path.resolve(import.meta.dirname, '../src/locales');
    const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
    expect(files).toEqual(expect.arrayContaining(['shell.ts', 'plugins.ts', 'operations.ts']));
    for (const file of files) {
      const { default: messages } = (await import(path.join(dir, file))) as { default: { en: Tree; 'zh-CN': Tree } };
      expectSameKeys(file, messages.en, messages['zh-CN']);
    }
  });
});
