import { describe, expect, it } from 'vitest';
import { compareVersionsNewestFirst, latestVersionOf, searchIndex, SearchQueryError, type IndexEntry, type IndexVersion } from './registry-index.js';

function version(v: string, aiplat = '^1.0.0'): IndexVersion {
  return {
    version: v,
    engines: { aiplat },
    dependencies: {},
    optionalDependencies: {},
    sha256: '0'.repeat(64),
    size: 1,
    publishedAt: '2026-01-01T00:00:00.000Z',
    publisher: 'acme',
    keyId: null,
    signed: false,
    permissions: [],
  };
}

function entry(id: string, options: { en?: string; zh?: string; description?: string; categories?: string[]; versions?: IndexVersion[] } = {}): IndexEntry {
  const versions = options.versions ?? [version('1.0.0')];
  return {
    id,
    latest: latestVersionOf(versions.map((v) => v.version))!,
    displayName: { en: options.en ?? id, 'zh-CN': options.zh ?? id },
    description: options.description ? { en: options.description, 'zh-CN': options.description } : null,
    categories: options.categories ?? [],
    publisher: 'acme',
    versions,
  };
}

const entries: IndexEntry[] = [
  entry('chat-tools', { en: 'Chat tools', zh: '聊天工具', categories: ['Chat'] }),
  entry('chat', { en: 'Chat', zh: '聊天', categories: ['chat'] }),
  entry('assistant', { en: 'Chat assistant', zh: '助手', categories: ['agents'] }),
  entry('billing', { en: 'Billing', zh: '计费', description: 'Invoices for chat usage', categories: ['admin'] }),
  entry('gpu-monitor', { en: 'GPU monitor', zh: 'GPU 监控', categories: ['monitoring'] }),
  entry('tagged', { en: 'Tagged', zh: '标签', categories: ['chatops'] }),
  entry('new-api', {
    en: 'New API',
    zh: '新接口',
    versions: [version('3.0.0-beta.1', '^2.0.0'), version('2.0.0', '^2.0.0'), version('1.5.0', '^1.0.0'), version('1.0.0', '^1.0.0')],
  }),
  entry('beta-only', { versions: [version('0.2.0-rc.1', '>=1.0.0')] }),
];

const ids = (r: { items: { id: string }[] }) => r.items.map((i) => i.id);

describe('searchIndex', () => {
  it('with no query lists every plugin by id', () => {
    const r = searchIndex(entries, { limit: 100 });
    expect(ids(r)).toEqual([...entries.map((e) => e.id)].sort());
    expect(r.total).toBe(entries.length);
    expect(r.nextCursor).toBeNull();
  });

  it('ranks exact id, then id prefix, then name, then other fields', () => {
    const r = searchIndex(entries, { q: 'Chat' });
    // chat (exact id) · chat-tools (id prefix) · assistant (name) · billing (description), tagged (category "chatops")
    expect(ids(r)).toEqual(['chat', 'chat-tools', 'assistant', 'billing', 'tagged']);
  });

  it('matches the Chinese name and every word of a multi-word query', () => {
    expect(ids(searchIndex(entries, { q: '监控' }))).toEqual(['gpu-monitor']);
    expect(ids(searchIndex(entries, { q: 'invoices usage' }))).toEqual(['billing']);
    expect(ids(searchIndex(entries, { q: 'invoices nothing' }))).toEqual([]);
  });

  it('filters by category, case-insensitively and exactly', () => {
    expect(ids(searchIndex(entries, { category: 'CHAT' }))).toEqual(['chat', 'chat-tools']);
    expect(ids(searchIndex(entries, { category: 'chat', q: 'tools' }))).toEqual(['chat-tools']);
  });

  it('keeps plugins compatible with a plugin API version and reports the newest compatible version', () => {
    const v1 = searchIndex(entries, { aiplat: '1.0.0', q: 'new-api' });
    expect(v1.items[0]).toMatchObject({ id: 'new-api', latest: '2.0.0', compatibleVersion: '1.5.0', versionCount: 4 });
    expect(v1.items[0]!.release.engines.aiplat).toBe('^1.0.0');
    const v2 = searchIndex(entries, { aiplat: '2.1.0', limit: 100 });
    // A release is preferred over a newer pre-release; plugins without a v2-compatible version are left out.
    expect(v2.items.map((i) => [i.id, i.compatibleVersion])).toEqual([
      ['beta-only', '0.2.0-rc.1'],
      ['new-api', '2.0.0'],
    ]);
    expect(searchIndex(entries, { aiplat: '9.0.0', q: 'chat' }).items.map((i) => i.id)).toEqual([]);
  });

  it('reports latest as the compatible version when no aiplat is given', () => {
    const r = searchIndex(entries, { q: 'new-api' });
    expect(r.items[0]).toMatchObject({ compatibleVersion: '2.0.0', release: { version: '2.0.0' } });
  });

  it('pages with a cursor without gaps or repeats, and stays stable when a plugin is added', () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const r = searchIndex(entries, { limit: 3, ...(cursor ? { cursor } : {}) });
      seen.push(...ids(r));
      cursor = r.nextCursor ?? undefined;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual([...entries.map((e) => e.id)].sort());

    const first = searchIndex(entries, { limit: 3 });
    const grown = [...entries, entry('aaa-first')];
    const second = searchIndex(grown, { limit: 3, cursor: first.nextCursor! });
    expect(ids(second)).toEqual([...entries.map((e) => e.id)].sort().slice(3, 6));
  });

  it('refuses a limit, an aiplat version or a cursor it cannot use, naming the parameter', () => {
    const fails = (query: Parameters<typeof searchIndex>[1]) => {
      try {
        searchIndex(entries, query);
      } catch (error) {
        expect(error).toBeInstanceOf(SearchQueryError);
        return { field: (error as SearchQueryError).field, message: (error as Error).message };
      }
      throw new Error('expected a SearchQueryError');
    };
    expect(fails({ limit: 0 })).toMatchObject({ field: 'limit', message: expect.stringMatching(/1 to 100/) });
    expect(fails({ limit: 1.5 }).field).toBe('limit');
    expect(fails({ aiplat: '^1.0.0' })).toMatchObject({ field: 'aiplat', message: expect.stringMatching(/such as 1\.0\.0/) });
    expect(fails({ cursor: 'not a cursor' }).field).toBe('cursor');
    expect(fails({ cursor: Buffer.from('{"x":1}').toString('base64url') }).field).toBe('cursor');
  });
});

describe('version order', () => {
  it('sorts newest first by semver and picks a release as latest', () => {
    const sorted = ['1.0.0', '1.10.0', '1.2.0', '2.0.0-rc.1', '1.2.0-beta'].sort(compareVersionsNewestFirst);
    expect(sorted).toEqual(['2.0.0-rc.1', '1.10.0', '1.2.0', '1.2.0-beta', '1.0.0']);
    expect(latestVersionOf(sorted)).toBe('1.10.0');
    expect(latestVersionOf(['0.1.0-rc.1', '0.1.0-rc.2'])).toBe('0.1.0-rc.2');
    expect(latestVersionOf([])).toBeUndefined();
  });
});
