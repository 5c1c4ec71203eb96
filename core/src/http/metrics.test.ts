import { describe, expect, it } from 'vitest';
import { HttpMetrics } from './metrics.js';

describe('the core’s request metrics', () => {
  it('renders a Prometheus histogram (cumulative buckets, +Inf, sum, count) and a counter per method, route and status', async () => {
    const m = new HttpMetrics();
    m.observe('GET', '/api/x', 200, 0.0004);
    m.observe('GET', '/api/x', 200, 0.03);
    m.observe('GET', '/api/x', 404, 0.002);
    m.observe('POST', '/v1/y', 500, 20);
    const lines = (await m.registry.metrics()).split('\n');
    const value = (prefix: string) => Number(lines.find((l) => l.startsWith(`${prefix} `))?.slice(prefix.length + 1));
    const b = (labels: string, le: string) => value(`aiplat_http_request_duration_seconds_bucket{${labels},le="${le}"}`);
    const ok = 'method="GET",route="/api/x",status="200"';
    expect([b(ok, '0.001'), b(ok, '0.025'), b(ok, '0.05'), b(ok, '10'), b(ok, '+Inf')]).toEqual([1, 1, 2, 2, 2]);
    expect(value(`aiplat_http_request_duration_seconds_sum{${ok}}`)).toBeCloseTo(0.0304, 10);
    expect(value(`aiplat_http_request_duration_seconds_count{${ok}}`)).toBe(2);
    const slow = 'method="POST",route="/v1/y",status="500"';
    expect([b(slow, '10'), b(slow, '+Inf')]).toEqual([0, 1]);
    expect(value(`aiplat_http_requests_total{${ok}}`)).toBe(2);
    expect(value('aiplat_http_requests_total{method="GET",route="/api/x",status="404"}')).toBe(1);
    expect(lines).toContain('# TYPE aiplat_http_request_duration_seconds histogram');
    expect(lines).toContain('# TYPE aiplat_http_requests_total counter');
  });
});
