/** Whether a TCP server answers at the URL's host and port (for PostgreSQL, Redis, ... URLs). */
export function reachable(url: string, defaultPort: number, timeoutMs?: number): Promise<boolean>;
