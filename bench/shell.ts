/**
 * `npm run bench:shell`: what the web shell costs a browser, measured in Chromium against the real
 * core serving the production build (the precompressed files, as `npm start` does).
 *
 * 1. Builds whatever UI is stale (scripts/build-ui.mjs --if-stale), starts the core on a temp data
 *    folder with the examples plugins, and signs in once through the login page in Chromium.
 * 2. N times (default 5), in a new browser context (empty cache) holding that session in
 *    localStorage (`aiplat.session`, as the SDK stores it) and the language set to English, loads
 *    the dashboard route `/` until the network is idle (no request for 500 ms) and records every
 *    response: count, type, URL, encoding and transfer size; the largest contentful paint
 *    (PerformanceObserver, buffered); then, per plugin remote that contributes a page with a
 *    navigation entry, opens that page from the navigation and records what it fetches under
 *    `/_remotes/<id>/`.
 * 3. Reports the medians and the goals of issue 4: dashboard JS ≤ 250 kB gzipped, largest chunk of
 *    the shell build ≤ 500 kB minified, LCP ≤ 1 s (1 kB = 1000 bytes).
 *
 * Gzipped bytes: each script and stylesheet URL the page loaded is fetched again with
 * `Accept-Encoding: gzip` only and the bytes on the wire are counted (the core sends its `.gz`
 * twin, gzip level 9, for files of 1 KiB and more, and small files as they are). Chromium's own
 * transfer sizes are reported beside them: on localhost (a secure context) it asks for br too, so
 * it gets the `.br` twins.
 *
 *   npm run bench:shell -- [--runs 5] [--warmup 1] [--log-level warn]
 *
 * Environment equivalents: BENCH_RUNS, BENCH_WARMUP, BENCH_LOG_LEVEL; AIPLAT_CHROMIUM names the
 * browser (default /usr/bin/chromium; scripts/provision-chromium.sh installs it).
 *
 * Exits 0 when every run loaded the dashboard and every page it opened, whether or not the goals are
 * met; exits 1 when the build, the core, the browser or a page load fails.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Browser, BrowserContext, Page, Request } from 'playwright-core';
import {
  ADMIN_PASSWORD,
  REPO_ROOT,
  coreEnv,
  fmt,
  freePort,
  machine,
  makeTempDataDir,
  median,
  numberOption,
  removeDir,
  spawnNode,
  stopGracefully,
  table,
  waitFor200,
  writeResult,
  type NodeChild,
} from './lib.js';
import { buildUiIfStale, launchChromium } from '../web-shell/test/browser.js';

const GOALS = { dashboardJsGzipBytes: 250_000, largestChunkBytes: 500_000, lcpMs: 1000 };
const IDLE_MS = 500;
const SHELL_ASSETS = path.join(REPO_ROOT, 'web-shell', 'dist', 'assets');

function parseOptions() {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string' },
      warmup: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write('usage: npm run bench:shell -- [--runs n] [--warmup n] [--log-level level]\n');
    process.exit(0);
  }
  return {
    runs: Math.max(1, Math.round(numberOption(values, 'runs', 'BENCH_RUNS', 5))),
    warmup: Math.round(numberOption(values, 'warmup', 'BENCH_WARMUP', 1)),
    logLevel: values['log-level'] ?? process.env.BENCH_LOG_LEVEL ?? 'warn',
  };
}

type Kind = 'js' | 'css' | 'other';

interface Loaded {
  url: string;
  /** Path without the origin (and with the query). */
  path: string;
  kind: Kind;
  resourceType: string;
  status: number;
  /** content-encoding Chromium got. */
  encoding: string;
  /** Body bytes on the wire as Chromium received them. */
  transferBytes: number;
}

interface Totals {
  requests: number;
  jsFiles: number;
  cssFiles: number;
  jsGzipBytes: number;
  cssGzipBytes: number;
  jsTransferBytes: number;
  cssTransferBytes: number;
  /** Every response's body bytes as Chromium received them (documents, API, fonts…). */
  allTransferBytes: number;
}

interface RemoteSample {
  pluginId: string;
  /** Fetched under /_remotes/<id>/ while the dashboard loaded (its widget, its entry). */
  onDashboard: Totals;
  /** Fetched under /_remotes/<id>/ when its page was opened after the dashboard. */
  onPage: Totals;
}

interface RunSample {
  dashboard: Totals;
  /** The dashboard's files from the shell itself (not under /_remotes/). */
  shell: Totals;
  lcpMs: number;
  domContentLoadedMs: number;
  loadMs: number;
  /** From navigation start until the network was idle (minus the idle wait). */
  idleMs: number;
  remotes: RemoteSample[];
  /** Every JS and CSS file of the dashboard load, with its gzipped size, largest first. */
  files: { path: string; kind: Kind; gzipBytes: number; transferBytes: number; encoding: string }[];
  /** content-encoding of the JS and CSS Chromium received (it asks for br and zstd on localhost too). */
  chromiumEncodings: string[];
  consoleErrors: string[];
}

interface PageTarget {
  pluginId: string;
  route: string;
  navSelector: string;
}

// ---------------------------------------------------------------------------------------------

const gzipSizes = new Map<string, Promise<{ bytes: number; encoding: string }>>();

/** Bytes on the wire for `url` asked with `Accept-Encoding: gzip` only (cached per URL: assets are immutable in a run). */
function gzipSize(url: string): Promise<{ bytes: number; encoding: string }> {
  let size = gzipSizes.get(url);
  if (!size) {
    size = new Promise((resolve, reject) => {
      const req = http.get(url, { headers: { 'accept-encoding': 'gzip' }, agent: false }, (res) => {
        let bytes = 0;
        res.on('data', (chunk: Buffer) => (bytes += chunk.length));
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`GET ${url} answered ${res.statusCode}`));
          else resolve({ bytes, encoding: String(res.headers['content-encoding'] ?? 'identity') });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
    });
    gzipSizes.set(url, size);
  }
  return size;
}

function kindOf(request: Request, contentType: string): Kind {
  const type = request.resourceType();
  if (type === 'script' || /javascript|ecmascript/.test(contentType)) return 'js';
  if (type === 'stylesheet' || contentType.includes('text/css')) return 'css';
  return 'other';
}

async function totals(loaded: Loaded[]): Promise<Totals> {
  const t: Totals = { requests: loaded.length, jsFiles: 0, cssFiles: 0, jsGzipBytes: 0, cssGzipBytes: 0, jsTransferBytes: 0, cssTransferBytes: 0, allTransferBytes: 0 };
  for (const l of loaded) {
    t.allTransferBytes += l.transferBytes;
    if (l.kind === 'other' || l.status !== 200) continue;
    const gz = (await gzipSize(l.url)).bytes;
    if (l.kind === 'js') {
      t.jsFiles++;
      t.jsGzipBytes += gz;
      t.jsTransferBytes += l.transferBytes;
    } else {
      t.cssFiles++;
      t.cssGzipBytes += gz;
      t.cssTransferBytes += l.transferBytes;
    }
  }
  return t;
}

/**
 * Record every finished request of a page from now on, and tell when the network has been idle
 * (nothing in flight) for IDLE_MS. WebSockets (the event stream) are not requests here.
 */
function recorder(page: Page) {
  const loaded: Loaded[] = [];
  const pending: Promise<void>[] = [];
  let inFlight = 0;
  let lastChange = performance.now();
  const onRequest = () => {
    inFlight++;
    lastChange = performance.now();
  };
  const onDone = (request: Request, failed: boolean) => {
    inFlight = Math.max(0, inFlight - 1);
    lastChange = performance.now();
    if (failed) return;
    pending.push(
      (async () => {
        const response = await request.response();
        if (!response) return;
        const headers = await response.allHeaders();
        const sizes = await request.sizes();
        const url = new URL(request.url());
        loaded.push({
          url: request.url(),
          path: url.pathname + url.search,
          kind: kindOf(request, headers['content-type'] ?? ''),
          resourceType: request.resourceType(),
          status: response.status(),
          encoding: headers['content-encoding'] ?? 'identity',
          transferBytes: sizes.responseBodySize,
        });
      })(),
    );
  };
  const finished = (r: Request) => onDone(r, false);
  const failedRequest = (r: Request) => onDone(r, true);
  page.on('request', onRequest);
  page.on('requestfinished', finished);
  page.on('requestfailed', failedRequest);
  return {
    /** Resolves once nothing was in flight for IDLE_MS; with the time the network went quiet. */
    async idle(timeoutMs = 30_000): Promise<number> {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const now = performance.now();
        if (inFlight === 0 && now - lastChange >= IDLE_MS) return lastChange;
        if (now > deadline) throw new Error(`the network did not go idle within ${timeoutMs} ms (${inFlight} requests in flight)`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop(): Promise<Loaded[]> {
      page.off('request', onRequest);
      page.off('requestfinished', finished);
      page.off('requestfailed', failedRequest);
      await Promise.all(pending);
      return loaded;
    },
  };
}

/** The session the SDK keeps in localStorage, taken from a real sign-in through the login page. */
async function signInOnce(browser: Browser, base: string): Promise<string> {
  const context = await browser.newContext({ locale: 'en-US' });
  try {
    const page = await context.newPage();
    await page.goto(`${base}/login`);
    await page.locator('[data-test=username]').fill('admin');
    await page.locator('[data-test=password]').fill(ADMIN_PASSWORD);
    await page.locator('[data-test=login-submit]').click();
    await page.waitForURL(`${base}/`, { timeout: 30_000 });
    const session = (await page.evaluate(`localStorage.getItem('aiplat.session')`)) as string | null;
    if (!session) throw new Error('signed in, but localStorage has no aiplat.session');
    return session;
  } finally {
    await context.close();
  }
}

async function measureRun(browser: Browser, base: string, session: string, targets: PageTarget[]): Promise<RunSample> {
  const context: BrowserContext = await browser.newContext({ locale: 'en-US', viewport: { width: 1440, height: 900 } });
  try {
    context.setDefaultTimeout(30_000);
    // Before any of the page's scripts: the session and the language, and an LCP observer (browser code, as a string).
    await context.addInitScript(`
      localStorage.setItem('aiplat.session', ${JSON.stringify(session)});
      localStorage.setItem('aiplat.locale', 'en');
      window.__lcp = 0;
      new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) window.__lcp = Math.max(window.__lcp, entry.startTime);
      }).observe({ type: 'largest-contentful-paint', buffered: true });
    `);
    const page = await context.newPage();
    const consoleErrors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`${m.text()} ${m.location().url}`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`${e.name}: ${e.message}`));

    const dashboardRec = recorder(page);
    const started = performance.now();
    const response = await page.goto(`${base}/`, { waitUntil: 'load' });
    if (response?.status() !== 200) throw new Error(`GET / answered ${response?.status()}`);
    await page.locator('[data-test=system-widget]').waitFor();
    const quietAt = await dashboardRec.idle();
    const dashboardLoaded = await dashboardRec.stop();
    if (new URL(page.url()).pathname !== '/') throw new Error(`the dashboard redirected to ${page.url()} (is the session accepted?)`);
    const timing = (await page.evaluate(`(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      return { lcp: window.__lcp, dcl: nav ? nav.domContentLoadedEventEnd : 0, load: nav ? nav.loadEventEnd : 0 };
    })()`)) as { lcp: number; dcl: number; load: number };

    const remotes: RemoteSample[] = [];
    for (const target of targets) {
      const rec = recorder(page);
      await page.locator(target.navSelector).click();
      await page.waitForURL(`${base}${target.route}`);
      await rec.idle();
      const loaded = await rec.stop();
      if ((await page.locator(`[data-test=remote-error][data-plugin=${target.pluginId}]`).count()) > 0) {
        throw new Error(`the ${target.pluginId} page shows its load-error card`);
      }
      const under = `/_remotes/${target.pluginId}/`;
      remotes.push({
        pluginId: target.pluginId,
        onDashboard: await totals(dashboardLoaded.filter((l) => l.path.startsWith(under))),
        onPage: await totals(loaded.filter((l) => l.path.startsWith(under))),
      });
    }

    return {
      dashboard: await totals(dashboardLoaded),
      shell: await totals(dashboardLoaded.filter((l) => !l.path.startsWith('/_remotes/'))),
      lcpMs: timing.lcp,
      domContentLoadedMs: timing.dcl,
      loadMs: timing.load,
      idleMs: quietAt - started,
      remotes,
      files: (
        await Promise.all(
          dashboardLoaded
            .filter((l) => l.kind !== 'other' && l.status === 200)
            .map(async (l) => ({ path: l.path, kind: l.kind, gzipBytes: (await gzipSize(l.url)).bytes, transferBytes: l.transferBytes, encoding: l.encoding })),
        )
      ).sort((a, b) => b.gzipBytes - a.gzipBytes),
      chromiumEncodings: [...new Set(dashboardLoaded.filter((l) => l.kind !== 'other').map((l) => l.encoding))].sort(),
      consoleErrors,
    };
  } finally {
    await context.close();
  }
}

/** JS files of a build folder, largest first (minified bytes, as built). */
function jsChunks(dir: string): { file: string; bytes: number }[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /\.m?js$/.test(f))
    .map((file) => ({ file, bytes: statSync(path.join(dir, file)).size }))
    .sort((a, b) => b.bytes - a.bytes);
}

/** The built assets folder of a plugin's remote (plugins/* or examples/*), found by its manifest's id. */
function remoteAssetsDir(pluginId: string): string | undefined {
  for (const parent of ['plugins', 'examples']) {
    const dir = path.join(REPO_ROOT, parent);
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const manifestFile = path.join(dir, name, 'aiplat-plugin.json');
      if (!existsSync(manifestFile)) continue;
      const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { id?: string; web?: { remoteEntry?: string } };
      if (manifest.id === pluginId && manifest.web?.remoteEntry) return path.join(path.dirname(path.resolve(dir, name, manifest.web.remoteEntry)), 'assets');
    }
  }
  return undefined;
}

/** Pages reachable from the navigation, one per plugin remote that has both. */
async function pageTargets(base: string, token: string): Promise<{ targets: PageTarget[]; remotes: string[] }> {
  const res = await fetch(`${base}/api/v1/ui/remotes`, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`GET /api/v1/ui/remotes answered ${res.status}`);
  const { items } = (await res.json()) as { items: { pluginId: string; contributions: { kind: string; id: string; route?: string }[] }[] };
  const targets: PageTarget[] = [];
  for (const remote of items) {
    const pages = remote.contributions.filter((c) => c.kind === 'page' && c.route?.startsWith('/'));
    const nav = remote.contributions.find((c) => c.kind === 'nav' && pages.some((p) => p.route === c.route));
    if (nav) targets.push({ pluginId: remote.pluginId, route: nav.route!, navSelector: `[data-test=nav-${remote.pluginId}-${nav.id}]` });
  }
  return { targets, remotes: items.map((r) => r.pluginId) };
}

const kB = (bytes: number) => `${fmt(bytes / 1000, 1)} kB`;

function medianTotals(samples: Totals[]): Totals {
  const pick = (f: (t: Totals) => number) => median(samples.map(f));
  return {
    requests: pick((t) => t.requests),
    jsFiles: pick((t) => t.jsFiles),
    cssFiles: pick((t) => t.cssFiles),
    jsGzipBytes: pick((t) => t.jsGzipBytes),
    cssGzipBytes: pick((t) => t.cssGzipBytes),
    jsTransferBytes: pick((t) => t.jsTransferBytes),
    cssTransferBytes: pick((t) => t.cssTransferBytes),
    allTransferBytes: pick((t) => t.allTransferBytes),
  };
}

async function main(): Promise<void> {
  const options = parseOptions();
  buildUiIfStale({ echo: true });

  const dataDir = makeTempDataDir('shell');
  let proc: NodeChild | undefined;
  let browser: Browser | undefined;
  try {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    proc = spawnNode(
      'core/src/main.ts',
      coreEnv({ port, dataDir, pluginDirs: path.join(REPO_ROOT, 'examples'), logLevel: options.logLevel }, { AIPLAT_ACCESS_TOKEN_TTL: '86400' }),
    );
    await waitFor200(`${base}/api/v1/health`, proc);
    browser = await launchChromium();
    const session = await signInOnce(browser, base);
    const { targets, remotes } = await pageTargets(base, (JSON.parse(session) as { accessToken: string }).accessToken);

    process.stdout.write(
      `dashboard first load in Chromium (${browser.version()}), new context per run, ${options.warmup} warm-up + ${options.runs} measured run(s); ` +
        `remotes: ${remotes.join(', ') || 'none'}; pages opened: ${targets.map((t) => t.route).join(', ') || 'none'}\n`,
    );
    for (let i = 0; i < options.warmup; i++) await measureRun(browser, base, session, targets);
    const runs: RunSample[] = [];
    for (let i = 1; i <= options.runs; i++) {
      const run = await measureRun(browser, base, session, targets);
      runs.push(run);
      process.stdout.write(
        `  run ${i}/${options.runs}  ${run.dashboard.requests} requests  JS ${kB(run.dashboard.jsGzipBytes)} gz  CSS ${kB(run.dashboard.cssGzipBytes)} gz  ` +
          `LCP ${fmt(run.lcpMs)} ms  idle at ${fmt(run.idleMs)} ms` +
          run.remotes.map((r) => `  ${r.pluginId} page +${kB(r.onPage.jsGzipBytes + r.onPage.cssGzipBytes)} gz`).join('') +
          (run.consoleErrors.length ? `  console errors: ${run.consoleErrors.length}` : '') +
          '\n',
      );
    }

    const dashboard = medianTotals(runs.map((r) => r.dashboard));
    const shell = medianTotals(runs.map((r) => r.shell));
    const lcpMs = median(runs.map((r) => r.lcpMs));
    const shellChunks = jsChunks(SHELL_ASSETS);
    const largest = shellChunks[0] ?? { file: '(none)', bytes: 0 };
    const remoteMedians = (targets.length ? runs[0]!.remotes : []).map((r, i) => ({
      pluginId: r.pluginId,
      onDashboard: medianTotals(runs.map((run) => run.remotes[i]!.onDashboard)),
      onPage: medianTotals(runs.map((run) => run.remotes[i]!.onPage)),
    }));
    const encodings = [...new Set((await Promise.all([...gzipSizes.values()])).map((s) => s.encoding))].sort();
    const chromiumEncodings = [...new Set(runs.flatMap((r) => r.chromiumEncodings))].sort();

    const rows = [
      ['dashboard route / (median)', 'requests', 'JS files', 'JS gz', 'CSS gz', 'JS+CSS as sent to Chromium', 'all bytes as sent'],
      [
        'whole first load',
        fmt(dashboard.requests),
        fmt(dashboard.jsFiles),
        kB(dashboard.jsGzipBytes),
        kB(dashboard.cssGzipBytes),
        kB(dashboard.jsTransferBytes + dashboard.cssTransferBytes),
        kB(dashboard.allTransferBytes),
      ],
      ['  of it, the shell', fmt(shell.requests), fmt(shell.jsFiles), kB(shell.jsGzipBytes), kB(shell.cssGzipBytes), kB(shell.jsTransferBytes + shell.cssTransferBytes), kB(shell.allTransferBytes)],
      ...remoteMedians.map((r) => [
        `  of it, /_remotes/${r.pluginId}/ (widgets)`,
        fmt(r.onDashboard.requests),
        fmt(r.onDashboard.jsFiles),
        kB(r.onDashboard.jsGzipBytes),
        kB(r.onDashboard.cssGzipBytes),
        kB(r.onDashboard.jsTransferBytes + r.onDashboard.cssTransferBytes),
        kB(r.onDashboard.allTransferBytes),
      ]),
    ];
    const remoteRows = [
      ['plugin remote (median)', 'on the dashboard', 'opening its page', 'total beyond the shell', 'requests'],
      ...remoteMedians.map((r) => [
        r.pluginId,
        kB(r.onDashboard.jsGzipBytes + r.onDashboard.cssGzipBytes),
        kB(r.onPage.jsGzipBytes + r.onPage.cssGzipBytes),
        kB(r.onDashboard.jsGzipBytes + r.onDashboard.cssGzipBytes + r.onPage.jsGzipBytes + r.onPage.cssGzipBytes),
        `${fmt(r.onDashboard.requests)} + ${fmt(r.onPage.requests)}`,
      ]),
    ];
    const timingRows = [
      ['ms (median of ' + runs.length + ')', 'value'],
      ['largest contentful paint', fmt(lcpMs)],
      ['DOMContentLoaded', fmt(median(runs.map((r) => r.domContentLoadedMs)))],
      ['load event', fmt(median(runs.map((r) => r.loadMs)))],
      ['network idle (last request done)', fmt(median(runs.map((r) => r.idleMs)))],
    ];
    process.stdout.write(`\n${table(rows)}\n\n${table(remoteRows)}\n(JS + CSS gzipped under /_remotes/<id>/; the shared libraries come from the shell)\n\n${table(timingRows)}\n\n`);
    // Federation's shared-library chunks have long generated names: show the library they carry.
    const shorten = (p: string) => {
      const shared = /loadShare__(.+?)__loadShare__/.exec(p)?.[1];
      if (shared) return `[shared ${shared.replace(/_mf_1_/g, '/').replace(/_mf_2_/g, '-').replace(/_mf_3_/g, '.')}]`;
      return p.length > 70 ? `${p.slice(0, 40)}…${p.slice(-29)}` : p;
    };
    process.stdout.write(
      `largest files of the dashboard load (gzipped): ${runs[0]!.files
        .slice(0, 6)
        .map((f) => `${shorten(f.path)} ${kB(f.gzipBytes)}`)
        .join(', ')}\n`,
    );
    process.stdout.write(
      `largest JS chunks of the shell build (minified): ${shellChunks
        .slice(0, 3)
        .map((c) => `${shorten(c.file)} ${kB(c.bytes)}`)
        .join(', ')}\n`,
    );
    process.stdout.write(
      `gzip figures: each JS/CSS URL fetched again with Accept-Encoding: gzip only (encodings served: ${encodings.join(', ')}); ` +
        `"as sent to Chromium" is what it received itself (${chromiumEncodings.join(', ')})\n\n`,
    );

    const goals = {
      dashboardJsGzip: { goal: `≤ ${kB(GOALS.dashboardJsGzipBytes)}`, value: dashboard.jsGzipBytes, met: dashboard.jsGzipBytes <= GOALS.dashboardJsGzipBytes },
      largestChunk: { goal: `≤ ${kB(GOALS.largestChunkBytes)}`, value: largest.bytes, file: largest.file, met: largest.bytes <= GOALS.largestChunkBytes },
      lcp: { goal: `≤ ${fmt(GOALS.lcpMs)} ms`, value: lcpMs, met: lcpMs > 0 && lcpMs <= GOALS.lcpMs },
    };
    process.stdout.write(
      `${table([
        ['goal (issue 4)', 'measured', 'goal', 'result'],
        ['dashboard JS, gzipped', kB(dashboard.jsGzipBytes), goals.dashboardJsGzip.goal, goals.dashboardJsGzip.met ? 'PASS' : 'FAIL'],
        [`largest chunk, minified (${largest.file})`, kB(largest.bytes), goals.largestChunk.goal, goals.largestChunk.met ? 'PASS' : 'FAIL'],
        ['LCP on localhost', `${fmt(lcpMs)} ms`, goals.lcp.goal, goals.lcp.met ? 'PASS' : 'FAIL'],
      ])}\n`,
    );
    const errors = [...new Set(runs.flatMap((r) => r.consoleErrors))];
    if (errors.length) process.stdout.write(`\nnote: console errors during the runs:\n  ${errors.join('\n  ')}\n`);

    const file = writeResult('shell', {
      benchmark: 'shell',
      date: new Date().toISOString(),
      machine: machine(),
      browser: `Chromium ${browser.version()}`,
      options,
      gzipMethod: 'each JS/CSS URL fetched again with Accept-Encoding: gzip only; bytes on the wire',
      kilobyte: 1000,
      median: { dashboard, shell, lcpMs, remotes: remoteMedians },
      shellChunks,
      remoteChunks: Object.fromEntries(
        remotes.map((id) => [id, jsChunks(remoteAssetsDir(id) ?? '').slice(0, 5)]),
      ),
      goals,
      runs,
    });
    process.stdout.write(`results: ${path.relative(REPO_ROOT, file)}\n`);
  } finally {
    await browser?.close();
    if (proc) await stopGracefully(proc);
    removeDir(dataDir);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:shell failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
