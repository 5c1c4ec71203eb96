import { describe, expect, it } from 'vitest';
import { decryptSetting, decryptText, deriveSecretKey, encryptSetting, encryptText, SecretDecryptError } from './crypto.js';
import { makeKeyCheck, verifyKey, type StoredSecret } from './keys.js';
import { findSecretMarkers, mapSecretMarkers, secretPaths } from './paths.js';
import { REDACTED, Redactor } from './redactor.js';

const MASTER = 'unit-test-master-key-0123456789-abcdefgh';
const OTHER = 'unit-test-other-key-0123456789-abcdefghij';

describe('secret encryption', () => {
  const key = deriveSecretKey(MASTER);

  it('derives a stable key with an 8-hex-digit id, different per master key', () => {
    expect(deriveSecretKey(MASTER).id).toBe(key.id);
    expect(key.id).toMatch(/^[0-9a-f]{8}$/);
    expect(key.key).toHaveLength(32);
    expect(deriveSecretKey(OTHER).id).not.toBe(key.id);
  });

  it('round-trips with a fresh IV each time, in the versioned format', () => {
    const a = encryptText(key, 'hunter2!', 'ctx');
    const b = encryptText(key, 'hunter2!', 'ctx');
    expect(a).not.toBe(b);
    expect(a).toMatch(new RegExp(`^v1:${key.id}:[\\w-]{16}:[\\w-]{22}:[\\w-]+$`));
    expect(decryptText(key, a, 'ctx')).toBe('hunter2!');
    expect(decryptText(key, b, 'ctx')).toBe('hunter2!');
  });

  it('refuses a wrong key by id, a moved value and a changed value', () => {
    const sealed = encryptSetting(key, 'plugin-a', ['apiKey'], 'sk-123456');
    expect(decryptSetting(key, 'plugin-a', ['apiKey'], sealed)).toBe('sk-123456');
    const other = deriveSecretKey(OTHER);
    expect(() => decryptSetting(other, 'plugin-a', ['apiKey'], sealed)).toThrow(`encrypted with key id ${key.id}, but AIPLAT_SECRET_KEY has key id ${other.id}`);
    expect(() => decryptSetting(key, 'plugin-b', ['apiKey'], sealed)).toThrow(SecretDecryptError);
    expect(() => decryptSetting(key, 'plugin-a', ['token'], sealed)).toThrow('does not decrypt');
    const parts = sealed.$secret.split(':');
    parts[4] = Buffer.from('tampered!').toString('base64url');
    expect(() => decryptSetting(key, 'plugin-a', ['apiKey'], { $secret: parts.join(':') })).toThrow('does not decrypt');
  });

  it('keeps the type of non-string secret values', () => {
    expect(decryptSetting(key, 'p', ['n'], encryptSetting(key, 'p', ['n'], 42))).toBe(42);
  });
});

describe('the start-up key check', () => {
  const key = deriveSecretKey(MASTER);
  const secret = (plugin: string, path: string[]): StoredSecret => ({ plugin, path, marker: encryptSetting(key, plugin, path, 'value-1234') });

  it('passes with the right key and no key when nothing is stored', () => {
    expect(verifyKey(undefined, { secrets: [], keyCheck: undefined }).key).toBeUndefined();
    const result = verifyKey(MASTER, { secrets: [secret('a', ['x'])], keyCheck: makeKeyCheck(key) });
    expect(result.plaintexts.map((p) => p.value)).toEqual(['value-1234']);
  });

  it('names the count, the plugins and the key ids', () => {
    expect(() => verifyKey(undefined, { secrets: [secret('a', ['x'])], keyCheck: undefined })).toThrow(
      `AIPLAT_SECRET_KEY is not set, but 1 stored secret needs it (plugin settings of a). Set AIPLAT_SECRET_KEY to the key they were encrypted with (key id ${key.id}).`,
    );
    expect(() => verifyKey(undefined, { secrets: [], keyCheck: makeKeyCheck(key) })).toThrow(`secrets were set up with a key (key id ${key.id})`);
    const other = deriveSecretKey(OTHER);
    expect(() => verifyKey(OTHER, { secrets: [], keyCheck: makeKeyCheck(key) })).toThrow(
      `AIPLAT_SECRET_KEY does not match the key the stored secrets were encrypted with (key id ${other.id}, expected ${key.id}).`,
    );
    // Without a key check the secrets' own key ids tell.
    expect(() => verifyKey(OTHER, { secrets: [secret('a', ['x'])], keyCheck: undefined })).toThrow(`(key id ${other.id}, expected ${key.id})`);
  });
});

describe('setting paths', () => {
  it('finds x-secret fields through nested objects', () => {
    const schema = {
      type: 'object',
      properties: {
        apiKey: { type: 'string', 'x-secret': true },
        plain: { type: 'string' },
        smtp: { type: 'object', properties: { host: { type: 'string' }, password: { type: 'string', 'x-secret': true } } },
      },
    };
    expect(secretPaths(schema)).toEqual([['apiKey'], ['smtp', 'password']]);
    expect(secretPaths(undefined)).toEqual([]);
  });

  it('finds and maps stored markers wherever they are', () => {
    const stored = { a: 1, b: { $secret: 'x' }, c: { d: { $secret: 'y' }, e: [1] } };
    expect(findSecretMarkers(stored).map((m) => m.path)).toEqual([['b'], ['c', 'd']]);
    expect(mapSecretMarkers(stored, () => REDACTED)).toEqual({ a: 1, b: REDACTED, c: { d: REDACTED, e: [1] } });
  });
});

describe('the redactor', () => {
  it('replaces known plaintexts in text, also as they appear inside JSON', () => {
    const redactor = new Redactor();
    expect(redactor.redactText('nothing known yet')).toBe('nothing known yet');
    redactor.addSecret('p4ss"w\\rd(.*)');
    redactor.addSecret('abc'); // too short to search for
    redactor.addSecret(undefined);
    expect(redactor.redactText('x p4ss"w\\rd(.*) y abc')).toBe(`x ${REDACTED} y abc`);
    expect(redactor.redactText(JSON.stringify({ msg: 'using p4ss"w\\rd(.*)' }))).toBe(`{"msg":"using ${REDACTED}"}`);
  });

  it('replaces the longer of two overlapping secrets whole', () => {
    const redactor = new Redactor();
    redactor.addSecret('secret-one');
    redactor.addSecret('secret-one-two');
    expect(redactor.redactText('a secret-one-two b secret-one')).toBe(`a ${REDACTED} b ${REDACTED}`);
  });

  it('redacts values of secret-named fields and known plaintexts through objects and arrays', () => {
    const redactor = new Redactor();
    redactor.addSecret('sk-known-value');
    const input = {
      password: 'x',
      smtpPassword: 'y',
      'x-api-key': 'z',
      accessToken: 't',
      client_secret: 's',
      maxTokens: 100,
      tokenType: 'Bearer',
      secrets: { apiKey: { set: true } },
      list: [{ note: 'with sk-known-value inside' }],
      ok: 'plain',
    };
    expect(redactor.redactValue(input)).toEqual({
      password: REDACTED,
      smtpPassword: REDACTED,
      'x-api-key': REDACTED,
      accessToken: REDACTED,
      client_secret: REDACTED,
      maxTokens: 100,
      tokenType: 'Bearer',
      secrets: { apiKey: { set: true } },
      list: [{ note: `with ${REDACTED} inside` }],
      ok: 'plain',
    });
    expect(input.password).toBe('x');
    expect(redactor.redactNames(input).list[0]!.note).toBe('with sk-known-value inside');
  });

  it('returns the same object when nothing changes and leaves class instances alone', () => {
    const redactor = new Redactor();
    const plain = { a: 1, b: ['c'] };
    expect(redactor.redactValue(plain)).toBe(plain);
    const error = new Error('boom');
    expect(redactor.redactValue({ err: error }).err).toBe(error);
  });
});
