/**
 * What the marketplace pages and the installed-plugin actions share: the shapes the core's
 * marketplace and plugin-package API answers (core routes under `/api/v1`, docs/adr/0010), the
 * requests that start installs, upgrades, rollbacks and uninstalls (each an operation), the upload
 * of a package file with its progress, and errors — a request's or a failed operation's — in the
 * shell's language by code, with the server's own words beside them.
 */
import { useI18n } from 'vue-i18n';
import { ApiError, apiErrorFromText, coreApi, createFormat, isApiError, session, withBase, type LocalizedText, type Operation as SdkOperation } from '@aiplat/plugin-sdk/web';

// ---- shapes ----------------------------------------------------------------------------------

export type InstalledState = 'enabled' | 'disabled' | 'failed';
export type SignatureStatus = 'signed' | 'unsigned' | 'untrusted';

/** One plugin of `GET /marketplace/plugins`. */
export interface MarketplaceItem {
  id: string;
  displayName: LocalizedText;
  description: LocalizedText | null;
  categories: string[];
  publisher: string | null;
  latest: string;
  /** The newest version that works with this core, or null when none does. */
  compatibleVersion: string | null;
  signed: boolean;
  /** The registry (source name) it comes from. */
  source: string;
  installed: { version: string; state: InstalledState } | null;
  updateAvailable: string | null;
}

/** A registry the core reads, and whether it answered. */
export interface RegistrySource {
  name: string;
  location: string;
  ok: boolean;
  error?: string;
  plugins: number;
}

export interface MarketplacePage {
  items: MarketplaceItem[];
  nextCursor: string | null;
  sources: RegistrySource[];
}

export interface PermissionDeclaration {
  id: string;
  title: LocalizedText;
  defaultRoles?: string[];
}

/** The parts of a version's `aiplat-plugin.json` the marketplace shows. */
export interface PackageManifest {
  id: string;
  version: string;
  displayName: LocalizedText;
  description?: LocalizedText;
  permissions?: PermissionDeclaration[];
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  categories?: string[];
  license?: string;
  engines?: { aiplat?: string };
  icon?: string;
  web?: unknown;
}

export interface PublishedVersion {
  version: string;
  engines: { aiplat: string };
  dependencies: Record<string, string>;
  sha256: string;
  size: number;
  publishedAt: string;
  publisher: string | null;
  keyId: string | null;
  signed: boolean;
  compatible: boolean;
}

export interface InstalledPackage {
  version: string;
  previousVersion: string | null;
  state?: InstalledState;
  /** Null when not known (a plugin shipped with the installation). */
  signature: SignatureStatus | null;
  publisher: string | null;
  keyId: string | null;
  source?: string | null;
  installedAt: string | null;
  /** False for a plugin shipped with the installation (the marketplace's details say so). */
  fromPackage?: boolean;
}

/**
 * The package an installed plugin came from, from what the plugins API says of it (`installed`:
 * the package's facts, `true` without them, or null/false for a plugin shipped with the
 * installation): null when it did not come from a package, so it cannot be upgraded or uninstalled.
 */
export function packageOf(raw: unknown, version: string): InstalledPackage | null {
  if (raw === true) return { version, previousVersion: null, signature: null, publisher: null, keyId: null, installedAt: null };
  if (!raw || typeof raw !== 'object') return null;
  const info = raw as Partial<InstalledPackage>;
  if (info.fromPackage === false) return null;
  return {
    ...info,
    version: info.version ?? version,
    previousVersion: info.previousVersion ?? null,
    signature: info.signature ?? null,
    publisher: info.publisher ?? null,
    keyId: info.keyId ?? null,
    installedAt: info.installedAt ?? null,
  };
}

/** `GET /marketplace/plugins/:id`: one version of a plugin with everything its page shows. */
export interface MarketplaceDetails {
  id: string;
  source: string;
  version: string;
  versions: PublishedVersion[];
  manifest: PackageManifest;
  readme: string | null;
  changelog: string | null;
  compatible: boolean;
  /** Why it is, or is not, compatible (the core's sentence). */
  compatibility: string;
  installed: InstalledPackage | null;
  updateAvailable: string | null;
}

export interface UpdateItem {
  id: string;
  installed: string;
  latest: string;
}

export interface AllowlistEntry {
  pluginId: string;
  note: string | null;
  createdBy: string | null;
  /** The username of `createdBy` (null when that user is gone). */
  createdByName?: string | null;
  createdAt: string;
}

/** A core operation (`GET /api/v1/operations/:id`): the SDK's type, as its useOperation follows it. */
export type Operation = SdkOperation;

export type InstalledAction = 'upgrade' | 'rollback' | 'uninstall';

/** An installed plugin a package action applies to. */
export interface PackageTarget {
  id: string;
  name: string;
  installed: { version: string; previousVersion?: string | null };
  updateAvailable?: string | null;
  source?: string | null;
}

// ---- requests --------------------------------------------------------------------------------

const enc = encodeURIComponent;

export function searchMarketplace(query: { q?: string; category?: string; limit?: number; cursor?: string | null }, signal?: AbortSignal): Promise<MarketplacePage> {
  return coreApi.get<MarketplacePage>('/marketplace/plugins', { q: query.q, category: query.category, limit: query.limit, cursor: query.cursor }, { signal });
}

export function marketplaceDetails(id: string, options: { version?: string; source?: string } = {}): Promise<MarketplaceDetails> {
  return coreApi.get<MarketplaceDetails>(`/marketplace/plugins/${enc(id)}`, { version: options.version, source: options.source });
}

export async function listUpdates(): Promise<UpdateItem[]> {
  return (await coreApi.get<{ items: UpdateItem[] }>('/marketplace/updates')).items;
}

type Started = { operation: Operation };

export function installPlugin(id: string, options: { version?: string; source?: string } = {}): Promise<Started> {
  return coreApi.post<Started>('/plugins/install', { id, ...(options.version ? { version: options.version } : {}), ...(options.source ? { source: options.source } : {}) });
}

export function upgradePlugin(id: string, version?: string): Promise<Started> {
  return coreApi.post<Started>(`/plugins/${enc(id)}/upgrade`, version ? { version } : {});
}

export function rollbackPlugin(id: string): Promise<Started> {
  return coreApi.post<Started>(`/plugins/${enc(id)}/rollback`, {});
}

export function uninstallPlugin(id: string, keepData: boolean): Promise<Started> {
  return coreApi.post<Started>(`/plugins/${enc(id)}/uninstall`, { keepData });
}

export async function listAllowlist(): Promise<AllowlistEntry[]> {
  return (await coreApi.get<{ items: AllowlistEntry[] }>('/plugins/unsigned-allowlist')).items;
}

export function addToAllowlist(pluginId: string, note?: string): Promise<unknown> {
  return coreApi.post('/plugins/unsigned-allowlist', { pluginId, ...(note ? { note } : {}) });
}

export function removeFromAllowlist(pluginId: string): Promise<unknown> {
  return coreApi.delete(`/plugins/unsigned-allowlist/${enc(pluginId)}`);
}

/**
 * Send a package file to `POST /plugins/upload` with the upload's progress (fetch cannot report
 * it; XMLHttpRequest can). Resolves with the install operation the core started.
 */
export function uploadPackage(file: Blob, options: { onProgress?: (loaded: number, total: number) => void; signal?: AbortSignal } = {}): Promise<Started> {
  const send = (token: string) =>
    new Promise<{ status: number; body: string; statusText: string }>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', withBase('/api/v1/plugins/upload'));
      xhr.setRequestHeader('authorization', `Bearer ${token}`);
      xhr.setRequestHeader('content-type', 'application/gzip');
      xhr.upload.onprogress = (e) => options.onProgress?.(e.loaded, e.lengthComputable ? e.total : file.size);
      xhr.onerror = () => reject(new ApiError(0, 'network', 'The upload failed'));
      xhr.onabort = () => reject(new DOMException('The upload was cancelled', 'AbortError'));
      xhr.onload = () => resolve({ status: xhr.status, body: xhr.responseText, statusText: xhr.statusText });
      options.signal?.addEventListener('abort', () => xhr.abort(), { once: true });
      xhr.send(file);
    });
  return (async () => {
    let res = await send(await session.accessToken());
    if (res.status === 401) {
      await session.refresh();
      res = await send(await session.accessToken());
    }
    if (res.status >= 200 && res.status < 300) {
      try {
        const body = JSON.parse(res.body) as Partial<Started>;
        if (body.operation) return { operation: body.operation };
      } catch {
        /* not JSON: an error below */
      }
    }
    throw apiErrorFromText(res.status, res.body, res.statusText);
  })();
}

// ---- errors ----------------------------------------------------------------------------------

export interface ShownError {
  /** In the shell's language (the code's translation when there is one). */
  title: string;
  /** The server's own words, where they add something (which file was modified, what is missing). */
  detail?: string;
  code?: string;
}

/** Errors of a request or of a failed operation (`{ code, message }`): the code's translation and the server's message. */
export function useShownError(): (error: unknown) => ShownError {
  const { t, te } = useI18n();
  return (error) => {
    let code: string | undefined;
    let message: string;
    if (isApiError(error)) {
      code = error.code;
      message = error.message;
      const problems = (error.details as { problems?: { path?: string; message?: string }[] } | undefined)?.problems;
      if (code === 'validation_failed' && Array.isArray(problems) && problems.length > 0) {
        message = problems.map((p) => (p.path ? `${p.path}: ${p.message ?? ''}` : String(p.message ?? ''))).join('; ');
      }
    } else if (error && typeof error === 'object' && 'code' in error && typeof (error as { code: unknown }).code === 'string') {
      code = (error as { code: string }).code;
      message = String((error as { message?: unknown }).message ?? '');
    } else {
      message = error instanceof Error ? error.message : String(error);
    }
    if (code === 'interrupted') return { title: t('marketplace.progress.interrupted'), detail: message || undefined, code };
    const key = `errors.${code ?? ''}`;
    if (code && te(key)) {
      const title = t(key);
      return { title, detail: message && message !== title ? message : undefined, code };
    }
    return { title: message || code || t('marketplace.progress.failedUnknown'), code };
  };
}

// ---- formatting ------------------------------------------------------------------------------

/** Bytes as "1.2 MB" in the given locale (the SDK's formatting). */
export function formatBytes(bytes: number, locale: string): string {
  return createFormat(locale).bytes(bytes);
}

/** A date (no time) in the given locale. */
export function formatDate(iso: string | null | undefined, locale: string): string {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : new Intl.DateTimeFormat(locale, { year: 'numeric', month: 'short', day: 'numeric' }).format(d);
}

/** A date and time in the given locale. */
export function formatDateTime(iso: string | null | undefined, locale: string): string {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : new Intl.DateTimeFormat(locale, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' }).format(d);
}

/** The one or two letters a plugin's tile shows. */
export function initialsOf(name: string): string {
  const words = name.trim().split(/[\s_-]+/).filter(Boolean);
  if (words.length === 0) return '?';
  if (/[\u3400-\u9fff]/.test(words[0]![0]!)) return words[0]!.slice(0, 1);
  return (words.length > 1 ? words[0]![0]! + words[1]![0]! : words[0]!.slice(0, 2)).toUpperCase();
}

/** A stable hue per id, so a plugin's tile keeps its colour. */
export function hueOf(id: string): number {
  let h = 0;
  for (const ch of id) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return h;
}

/** Compare two semantic versions (`1.2.0`, `1.2.0-beta.1`): negative when a is older than b. */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string) => {
    const [core = '', pre] = v.replace(/^v/, '').split('+')[0]!.split(/-(.*)/s);
    return { nums: core.split('.').map((n) => Number.parseInt(n, 10) || 0), pre: pre ? pre.split('.') : [] };
  };
  const x = parse(a);
  const y = parse(b);
  for (let i = 0; i < 3; i++) {
    const d = (x.nums[i] ?? 0) - (y.nums[i] ?? 0);
    if (d !== 0) return d;
  }
  if (x.pre.length === 0 || y.pre.length === 0) return y.pre.length - x.pre.length;
  for (let i = 0; i < Math.max(x.pre.length, y.pre.length); i++) {
    const p = x.pre[i];
    const q = y.pre[i];
    if (p === undefined) return -1;
    if (q === undefined) return 1;
    const pn = /^\d+$/.test(p) ? Number(p) : undefined;
    const qn = /^\d+$/.test(q) ? Number(q) : undefined;
    if (pn !== undefined && qn !== undefined) {
      if (pn !== qn) return pn - qn;
    } else if (pn !== undefined) return -1;
    else if (qn !== undefined) return 1;
    else if (p !== q) return p < q ? -1 : 1;
  }
  return 0;
}
