import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { actorOf, outcomeOf } from './audit.js';
import { canonicalJson, canonicalRecord, chainRecords, cleanText, GENESIS_HASH, RECORD_KEYS, recordHash, type AuditRecord, type UnchainedRecord } from './chain.js';
import { csvField } from './query.js';

const record: UnchainedRecord = {
  at: '2026-05-01T12:00:00.000Z',
  actorType: 'user',
  actorId: 'u-1',
  actorName: 'ada',
  action: 'hello:POST /greetings',
  resourceType: 'greeting',
  resourceId: 'Ada',
  teamId: null,
  plugin: 'hello',
  requestId: 'r-1',
  clientIp: '192.0.2.1',
  outcome: 'success',
  status: 200,
  details: { path: '/api/plugins/hello/greetings', method: 'POST', params: {} },
};

describe('audit chain: canonical form', () => {
  it('writes JSON with sorted keys at every depth, no whitespace, JSON.stringify scalars', () => {
    expect(canonicalJson({ b: 1, a: [3, { d: null, c: 'x' }], é: true, B: 0.5 })).toBe('{"B":0.5,"a":[3,{"c":"x","d":null}],"b":1,"é":true}');
    expect(canonicalJson({ u: undefined, f: () => 1, n: Number.NaN, i: Infinity, z: -0, big: 10n, list: [undefined] })).toBe('{"big":"10","i":null,"list":[null],"n":null,"z":0}');
    expect(canonicalJson({ at: new Date('2026-05-01T12:00:00Z') })).toBe('{"at":"2026-05-01T12:00:00.000Z"}');
    expect(canonicalJson('quote " backslash \\ newline \n')).toBe('"quote \\" backslash \\\\ newline \\n"');
  });

  it('cleans what PostgreSQL cannot store: NUL and lone surrogates', () => {
    expect(cleanText('a\0b')).toBe('a\uFFFDb');
    expect(cleanText('x\uD800y')).toBe('x\uFFFDy');
    expect(cleanText('🙂')).toBe('🙂');
    expect(canonicalJson({ k: 'nul \0' })).toBe('{"k":"nul \uFFFD"}');
  });

  it('hashes the record as canonical JSON of its 16 fields, keys sorted', () => {
    const full: AuditRecord = { ...record, id: 1, prevHash: GENESIS_HASH };
    expect([...RECORD_KEYS]).toEqual(Object.keys(full).sort());
    expect(canonicalRecord(full)).toBe(canonicalJson(full));
    expect(canonicalRecord(full)).toMatch(/^\{"action":"hello:POST \/greetings","actorId":"u-1",.*"id":1,.*"prevHash":"0{64}",.*"teamId":null\}$/);
    expect(recordHash(full)).toBe(createHash('sha256').update(canonicalJson(full), 'utf8').digest('hex'));
  });

  it('chains: row 1 from the genesis value, each next row from the hash before it', () => {
    const [one, two] = chainRecords({ id: 0, hash: GENESIS_HASH }, [record, { ...record, action: 'hello:DELETE /greetings/:name' }]);
    expect(one).toMatchObject({ id: 1, prevHash: GENESIS_HASH });
    expect(two).toMatchObject({ id: 2, prevHash: one!.hash });
    expect(recordHash(two!)).toBe(two!.hash);
    // Any field changes the hash, the id included.
    expect(recordHash({ ...two!, id: 3 })).not.toBe(two!.hash);
    expect(recordHash({ ...two!, details: { ...(two!.details as object), extra: 1 } })).not.toBe(two!.hash);
  });
});

describe('audit rows: actors, outcomes, CSV fields', () => {
  it('names actors by how they signed in', () => {
    expect(actorOf(undefined)).toEqual({ type: 'anonymous', id: null, name: null });
    expect(actorOf({ id: 'u', username: 'ada', roles: [], via: 'session' })).toEqual({ type: 'user', id: 'u', name: 'ada' });
    expect(actorOf({ id: 'u', username: 'ada', roles: [], via: 'token', tokenId: 't-1' } as never)).toEqual({ type: 'token', id: 'u', name: 'ada', tokenId: 't-1' });
    expect(actorOf({ type: 'system', name: 'system' })).toEqual({ type: 'system', id: null, name: 'system' });
  });

  it('derives the outcome from the status', () => {
    expect([undefined, 200, 204, 302, 400, 401, 403, 409, 500, 503].map(outcomeOf)).toEqual([
      'success',
      'success',
      'success',
      'success',
      'failure',
      'denied',
      'denied',
      'failure',
      'error',
      'error',
    ]);
  });

  it('quotes CSV fields that need it (RFC 4180)', () => {
    expect(csvField(null)).toBe('');
    expect(csvField('')).toBe('""');
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
    expect(csvField(42)).toBe('42');
    expect(csvField({ b: 1, a: 'x,y' })).toBe('"{""a"":""x,y"",""b"":1}"');
  });
});
