import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of the core: request counts and latency by route, plus process defaults. */
export class HttpMetrics {
  readonly registry = new Registry();
  private readonly duration: Histogram<'method' | 'route' | 'status'>;
  private readonly requests: Counter<'method' | 'route' | 'status'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'aiplat_' });
    this.duration = new Histogram({
      name: 'aiplat_http_request_duration_seconds',
      help: 'HTTP request latency by route template',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [this.registry],
    });
    this.requests = new Counter({
      name: 'aiplat_http_requests_total',
      help: 'HTTP requests by route template and status',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
  }

  // Label children are looked up once per method/route/status, not hashed on every request.
  private readonly children = new Map<string, { duration: { observe(v: number): void }; requests: { inc(): void } }>();

  observe(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${status} ${route}`;
    let child = this.children.get(key);
    if (!child) {
      const labels = { method, route, status: String(status) };
      child = { duration: this.duration.labels(labels), requests: this.requests.labels(labels) };
      this.children.set(key, child);
    }
    child.duration.observe(seconds);
    child.requests.inc();
  }
}
