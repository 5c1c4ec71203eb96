/** What the core tells the shell in index.html (`window.__AIPLAT__`): the base path and the core's version. */
export interface BootInfo {
  /** PUBLIC_URL's path prefix, '' at the root (e.g. `/aiplat`). */
  basePath: string;
  version: string;
}

declare global {
  interface Window {
    __AIPLAT__?: Partial<BootInfo>;
  }
}

export function bootInfo(): BootInfo {
  const boot = typeof window === 'undefined' ? undefined : window.__AIPLAT__;
  return { basePath: boot?.basePath ?? '', version: boot?.version ?? 'dev' };
}

/** An absolute URL path under the base path: `apiPath('/api/v1/health')` → `/aiplat/api/v1/health`. */
export function withBase(path: string): string {
  return `${bootInfo().basePath}${path.startsWith('/') ? path : `/${path}`}`;
}
