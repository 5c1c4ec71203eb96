import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { MetricSample, MetricsRegistry } from '@aiplat/plugin-sdk';

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

/**
 * `coreServices.metrics` for one plugin: metrics whose samples the plugin gives at each scrape,
 * registered in the core's registry under `aiplat_<plugin>_…`, removed when the plugin stops.
 */
export function pluginMetrics(registry: Registry, pluginId: string, owned: Map<string, Set<string>>): MetricsRegistry {
  const prefix = `aiplat_${pluginId.replace(/-/g, '_')}_`;
  return {
    collect(metric) {
      if (!metric.name.startsWith(prefix) || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(metric.name)) {
        throw new Error(`metric name "${metric.name}" must start with ${prefix} and use letters, digits and _`);
      }
      registry.removeSingleMetric(metric.name);
      // prom-client renders any object with a name, help, type and get(); samples come from the plugin at each scrape.
      registry.registerMetric({
        name: metric.name,
        help: metric.help,
        type: metric.type,
        aggregator: 'sum',
        get: () => {
          let samples: MetricSample[];
          try {
            samples = metric.samples();
          } catch {
            samples = [];
          }
          return {
            name: metric.name,
            help: metric.help,
            type: metric.type,
            aggregator: 'sum',
            values: samples.map((s) => ({ value: s.value, labels: s.labels ?? {}, ...(s.suffix ? { metricName: metric.name + s.suffix } : {}) })),
          };
        },
      } as unknown as Parameters<Registry['registerMetric']>[0]);
      let names = owned.get(pluginId);
      if (!names) owned.set(pluginId, (names = new Set()));
      names.add(metric.name);
    },
  };
}

/** Take a stopped plugin's metrics out of the registry. */
export function dropPluginMetrics(registry: Registry, pluginId: string, owned: Map<string, Set<string>>): void {
  for (const name of owned.get(pluginId) ?? []) registry.removeSingleMetric(name);
  owned.delete(pluginId);
}
