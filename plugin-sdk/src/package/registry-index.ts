/**
 * The registry's index (docs/adr/0010): the shapes of `index.json` and `plugins/<id>/index.json`
 * that the registry writes and the core reads (over HTTP or from a copied folder), and the one
 * search the registry answers `GET /api/v1/plugins` with, so a folder source can search the same way.
 * Pure: no I/O.
 */
import semver from 'semver';
import type { LocalizedText, PermissionDeclaration } from '../manifest.js';

export const REGISTRY_INDEX_FORMAT = 'aiplat-registry/1';

/** One published version of a plugin, as the index records it. */
export interface IndexVersion {
  version: string;
  engines: { aiplat: string };
  dependencies: Record<string, string>;
  optionalDependencies: Record<string, string>;
  /** Hex SHA-256 of `package.tgz`. */
  sha256: string;
  /** Bytes of `package.tgz`. */
  size: number;
  /** ISO 8601. */
  publishedAt: string;
  /** The publisher account that published this version. */
  publisher: string;
  /** The key id in the package's SIGNATURE, when it has one. */
  keyId: string | null;
  /** True when the registry verified the signature against a key of the publisher. */
  signed: boolean;
  permissions: PermissionDeclaration[];
}

/** A plugin and all its versions; names, description and categories come from the latest version. */
export interface IndexEntry {
  id: string;
  latest: string;
  displayName: LocalizedText;
  description: LocalizedText | null;
  categories: string[];
  /** The publisher that owns the id (the first one to publish it). */
  publisher: string;
  /** Newest first by semver. */
  versions: IndexVersion[];
}

/** `index.json` at the root of a registry's data folder (and at `/static/index.json`). */
export interface RegistryIndex {
  format: typeof REGISTRY_INDEX_FORMAT;
  generatedAt: string;
  /** Sorted by id. */
  plugins: IndexEntry[];
}

export interface SearchQuery {
  /** Words matched, case-insensitively, against the id, the names, the descriptions and the categories. */
  q?: string;
  /** Keep only plugins in this category (case-insensitive). */
  category?: string;
  /** A plugin API version (e.g. `1.0.0`): keep only plugins with a version whose `engines.aiplat` accepts it. */
  aiplat?: string;
  /** 1–100, 20 by default. */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

export interface SearchHit {
  id: string;
  latest: string;
  displayName: LocalizedText;
  description: LocalizedText | null;
  categories: string[];
  publisher: string;
  versionCount: number;
  /** The newest version compatible with the query's `aiplat`; `latest` when it gives none. */
  compatibleVersion: string;
  /** The index record of `compatibleVersion`. */
  release: IndexVersion;
}

export interface SearchResult {
  items: SearchHit[];
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
  /** How many plugins match, over all pages. */
  total: number;
}

/** A query the search cannot answer; `field` names the parameter. */
export class SearchQueryError extends Error {
  constructor(
    readonly field: keyof SearchQuery,
    message: string,
  ) {
    super(message);
    this.name = 'SearchQueryError';
  }
}

export const SEARCH_DEFAULT_LIMIT = 20;
export const SEARCH_MAX_LIMIT = 100;

/** Sort order for versions: newest first by semver (build metadata breaks ties by text, so the order is total). */
export function compareVersionsNewestFirst(a: string, b: string): number {
  const byPrecedence = semver.rcompare(a, b);
  if (byPrecedence !== 0) return byPrecedence;
  return a < b ? 1 : a > b ? -1 : 0;
}

/** The version a plugin's `latest` points at: the newest release, or the newest pre-release when there is no release. */
export function latestVersionOf(versions: string[]): string | undefined {
  const sorted = [...versions].sort(compareVersionsNewestFirst);
  return sorted.find((v) => semver.prerelease(v) === null) ?? sorted[0];
}

// --- search -------------------------------------------------------------------------------------

/** Rank of a match: exact id, id prefix, name, anything else (lower first). */
type Rank = 0 | 1 | 2 | 3;

interface Haystack {
  id: string;
  names: string[];
  all: string;
  categories: string[];
}

// Entries are treated as immutable (the registry replaces an entry when it changes), so the
// lowercased text of each is computed once.
const haystacks = new WeakMap<IndexEntry, Haystack>();

function haystackOf(entry: IndexEntry): Haystack {
  let h = haystacks.get(entry);
  if (!h) {
    const names = [entry.displayName?.en ?? '', entry.displayName?.['zh-CN'] ?? ''].map((s) => s.toLowerCase());
    const categories = (entry.categories ?? []).map((c) => c.toLowerCase());
    const descriptions = entry.description ? [entry.description.en ?? '', entry.description['zh-CN'] ?? ''].map((s) => s.toLowerCase()) : [];
    const id = entry.id.toLowerCase();
    h = { id, names, categories, all: [id, ...names, ...descriptions, ...categories].join('\n') };
    haystacks.set(entry, h);
  }
  return h;
}

// Parsed `engines.aiplat` ranges (null: not a valid range), shared by every search.
const ranges = new Map<string, semver.Range | null>();
const MAX_CACHED_RANGES = 10_000;

function rangeOf(text: string): semver.Range | null {
  let range = ranges.get(text);
  if (range === undefined) {
    try {
      range = new semver.Range(text);
    } catch {
      range = null;
    }
    if (ranges.size >= MAX_CACHED_RANGES) ranges.clear();
    ranges.set(text, range);
  }
  return range;
}

// Whether a range accepts an API version, by `<version> <range>`: a catalogue has few distinct
// ranges and searches ask about few API versions, so nearly every check is a lookup.
const accepts = new Map<string, boolean>();

function rangeAccepts(rangeText: string, api: semver.SemVer): boolean {
  const key = `${api.version} ${rangeText}`;
  let ok = accepts.get(key);
  if (ok === undefined) {
    ok = rangeOf(rangeText)?.test(api) ?? false;
    if (accepts.size >= MAX_CACHED_RANGES) accepts.clear();
    accepts.set(key, ok);
  }
  return ok;
}

/** The newest version of an entry whose `engines.aiplat` accepts `api` (a release before a pre-release). */
function compatibleRelease(entry: IndexEntry, api: semver.SemVer): IndexVersion | undefined {
  let prerelease: IndexVersion | undefined;
  for (const v of entry.versions) {
    if (!rangeAccepts(v.engines?.aiplat ?? '', api)) continue;
    if (semver.prerelease(v.version) === null) return v;
    prerelease ??= v;
  }
  return prerelease;
}

function encodeCursor(rank: Rank, id: string): string {
  return Buffer.from(JSON.stringify([rank, id]), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): { rank: Rank; id: string } {
  const invalid = () => new SearchQueryError('cursor', 'cursor is not one this registry gave out: pass the nextCursor of the previous page unchanged');
  if (cursor.length > 200 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (!Array.isArray(parsed) || parsed.length !== 2 || ![0, 1, 2, 3].includes(parsed[0] as number) || typeof parsed[1] !== 'string') throw invalid();
  return { rank: parsed[0] as Rank, id: parsed[1] };
}

function compareHits(a: { rank: Rank; id: string }, b: { rank: Rank; id: string }): number {
  if (a.rank !== b.rank) return a.rank - b.rank;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Search index entries. Text matches when every word of `q` is in the id, a name, a description
 * or a category (case-insensitive); hits come exact id first, then id prefix, then name matches,
 * then the others, each group by id. Paging is by cursor (stable while plugins are added).
 * Throws {@link SearchQueryError} for a limit, aiplat version or cursor it cannot use.
 */
export function searchIndex(entries: readonly IndexEntry[], query: SearchQuery = {}): SearchResult {
  const limit = query.limit ?? SEARCH_DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > SEARCH_MAX_LIMIT) {
    throw new SearchQueryError('limit', `limit must be a whole number from 1 to ${SEARCH_MAX_LIMIT}, not ${String(query.limit)}`);
  }
  let api: semver.SemVer | undefined;
  if (query.aiplat !== undefined && query.aiplat !== '') {
    const parsed = semver.parse(query.aiplat);
    if (!parsed) throw new SearchQueryError('aiplat', `aiplat must be a plugin API version such as 1.0.0, not "${query.aiplat}"`);
    api = parsed;
  }
  const after = query.cursor ? decodeCursor(query.cursor) : undefined;
  const q = (query.q ?? '').trim().toLowerCase();
  const words = q === '' ? [] : q.split(/\s+/);
  const category = (query.category ?? '').trim().toLowerCase();

  const hits: { rank: Rank; id: string; entry: IndexEntry; release: IndexVersion }[] = [];
  for (const entry of entries) {
    const h = haystackOf(entry);
    if (category && !h.categories.includes(category)) continue;
    let rank: Rank = 0;
    if (words.length > 0) {
      if (!words.every((w) => h.all.includes(w))) continue;
      if (h.id === q) rank = 0;
      else if (h.id.startsWith(q)) rank = 1;
      else if (h.names.some((n) => n.includes(q)) || words.every((w) => h.names.some((n) => n.includes(w)))) rank = 2;
      else rank = 3;
    }
    let release: IndexVersion | undefined;
    if (api) {
      release = compatibleRelease(entry, api);
      if (!release) continue;
    } else {
      release = entry.versions.find((v) => v.version === entry.latest) ?? entry.versions[0];
      if (!release) continue;
    }
    hits.push({ rank, id: entry.id, entry, release });
  }
  hits.sort(compareHits);

  const start = after ? hits.findIndex((hit) => compareHits(hit, after) > 0) : 0;
  const page = start < 0 ? [] : hits.slice(start, start + limit);
  const last = page.at(-1);
  const more = start >= 0 && start + limit < hits.length;
  return {
    items: page.map(({ entry, release }) => ({
      id: entry.id,
      latest: entry.latest,
      displayName: entry.displayName,
      description: entry.description,
      categories: entry.categories,
      publisher: entry.publisher,
      versionCount: entry.versions.length,
      compatibleVersion: release.version,
      release,
    })),
    nextCursor: more && last ? encodeCursor(last.rank, last.id) : null,
    total: hits.length,
  };
}
