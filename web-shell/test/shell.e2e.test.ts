/**
 * The web shell in a real browser against a real core: sign-in, navigation, a plugin page loaded
 * at run time (examples/hello), both languages, live navigation updates across tabs, a plugin whose
 * remote is missing, no console errors, and the whole console served under a base path.
 *
 * One Debian Chromium (playwright-core, never a downloaded browser) for the file; `npm test`
 * provisions it (scripts/provision-chromium.sh) and builds the UI (scripts/build-ui.mjs --if-stale)
 * before the vitest passes; run alone, this file builds what is stale itself and fails with a clear
 * message when Chromium is missing. Selectors are the `data-test` attributes the shell and the hello
 * remote promise (all of them in `sel` below); expected strings come from the locale files. When a
 * test fails, every open page is captured; the screenshots' folder is printed in the failure message.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { startTestCore, TEST_ADMIN_PASSWORD, type TestCore } from '@aiplat/testing';
import { sdkMessages } from '../../plugin-sdk/web/messages.js';
import { sdkErrorMessages } from '../../plugin-sdk/web/error-messages.js';
import shellMessages from '../src/locales/shell.js';
import helloEn from '../../examples/hello/web/src/locales/en.js';
import helloZh from '../../examples/hello/web/src/locales/zh-CN.js';
import { buildUiIfStale, launchChromium } from './browser.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const FIXTURE_PLUGINS = path.join(ROOT, 'web-shell', 'test', 'fixtures', 'plugins');
const BASE_PATH = '/aiplat';

/** The fixture plugin whose manifest declares a remote that is never built. */
const BROKEN = { id: 'broken-ui', version: '1.0.0', name: 'Broken panel', page: '/broken', nav: 'broken-nav', widget: 'broken-widget' } as const;

const sel = {
  username: '[data-test=username]',
  password: '[data-test=password]',
  loginSubmit: '[data-test=login-submit]',
  loginError: '[data-test=login-error]',
  nav: '[data-test=nav]',
  navDashboard: '[data-test=nav-dashboard]',
  navPlugins: '[data-test=nav-plugins]',
  navHello: '[data-test=nav-hello-greeter-nav]',
  navBroken: `[data-test=nav-${BROKEN.id}-${BROKEN.nav}]`,
  pageTitle: '[data-test=page-title]',
  languageSwitch: '[data-test=language-switch]',
  locale: (locale: 'en' | 'zh-CN') => `[data-test=locale-${locale}]`,
  systemWidget: '[data-test=system-widget]',
  helloWidget: '[data-test=widget-hello-greetings-widget]',
  brokenWidget: `[data-test=widget-${BROKEN.id}-${BROKEN.widget}]`,
  remoteError: (pluginId: string) => `[data-test=remote-error][data-plugin=${pluginId}]`,
  anyRemoteError: '[data-test=remote-error]',
  pluginRow: (id: string) => `[data-test=plugin-row-${id}]`,
  pluginDisable: (id: string) => `[data-test=plugin-disable-${id}]`,
  pluginEnable: (id: string) => `[data-test=plugin-enable-${id}]`,
  confirm: '[data-test=confirm]:visible',
  cascadeList: '[data-test=cascade-list]:visible',
  helloName: '[data-test=hello-name]',
  helloSubmit: '[data-test=hello-submit]',
  helloResult: '[data-test=hello-result]',
  helloGreeting: '[data-test=hello-greeting]',
  helloCount: '[data-test=hello-count]',
};

const en = shellMessages.en;
const zh = shellMessages['zh-CN'];

/** vue-i18n's default plural choice for a message with two forms ("one | many"). */
function plural(message: string, count: number): string {
  const forms = message.split('|').map((f) => f.trim());
  const form = forms.length === 2 ? forms[count === 1 ? 0 : 1]! : forms[Math.min(count, forms.length - 1)]!;
  return form.replace('{count}', String(count));
}
const helloCount = (count: number) => plural(helloEn.result.count, count);

// ---------------------------------------------------------------------------------------------
// Console watch: every uncaught error and console error of every page, with the test it happened in.

interface Problem {
  test: string;
  kind: 'pageerror' | 'console';
  text: string;
  /** For console messages: the script or the resource the message is about. */
  url: string;
  page: string;
}

const problems: Problem[] = [];
let currentTest = 'setup';

function watchConsole(page: Page): void {
  page.on('pageerror', (error) => {
    problems.push({ test: currentTest, kind: 'pageerror', text: `${error.name}: ${error.message}\n${error.stack ?? ''}`, url: '', page: page.url() });
  });
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    problems.push({ test: currentTest, kind: 'console', text: message.text(), url: message.location().url, page: page.url() });
  });
}

/** The failed-resource messages the run provokes on purpose; anything else is a defect. */
function expectedProblem(p: Problem, origins: string[]): boolean {
  if (p.kind !== 'console') return false;
  // The broken plugin's remote entry is not built: Chromium reports its 404 (the shell's error card handles it).
  if (
    p.text === 'Failed to load resource: the server responded with a status of 404 (Not Found)' &&
    origins.some((o) => p.url === `${o}/_remotes/${BROKEN.id}/remoteEntry.js?v=${BROKEN.version}`)
  ) {
    return true;
  }
  // The wrong password on purpose: Chromium reports the 401 of the sign-in request.
  return (
    p.test === WRONG_PASSWORD_TEST &&
    p.text === 'Failed to load resource: the server responded with a status of 401 (Unauthorized)' &&
    origins.some((o) => p.url === `${o}/api/v1/auth/login`)
  );
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** Poll until `read()` satisfies `check`; on timeout, fail with the last value read. */
async function eventually<T>(what: string, read: () => Promise<T>, check: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastError: unknown;
  for (;;) {
    try {
      last = await read();
      lastError = undefined;
      if (check(last)) return last;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not true after ${timeoutMs} ms; last value ${JSON.stringify(last)}${lastError ? ` (${String(lastError)})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

const text = async (locator: Locator) => ((await locator.innerText({ timeout: 2000 })) ?? '').replace(/\s+/g, ' ').trim();

async function waitForText(page: Page, selector: string, expected: string | RegExp, timeoutMs = 10_000): Promise<string> {
  const locator = page.locator(selector).first();
  return eventually(
    `${selector} should read ${String(expected)}`,
    () => text(locator),
    (value) => (typeof expected === 'string' ? value === expected : expected.test(value)),
    timeoutMs,
  );
}

async function signIn(page: Page, password = TEST_ADMIN_PASSWORD): Promise<void> {
  await page.locator(sel.username).fill('admin');
  await page.locator(sel.password).fill(password);
  await page.locator(sel.loginSubmit).click();
}

async function switchLocale(page: Page, locale: 'en' | 'zh-CN'): Promise<void> {
  await page.locator(sel.languageSwitch).click();
  // The dropdown menu is teleported to <body>; take the visible one.
  await page.locator(`${sel.locale(locale)}:visible`).click();
  await waitForText(page, sel.navDashboard, locale === 'zh-CN' ? zh.nav.dashboard : en.nav.dashboard);
}

/**
 * Click a plugin enable/disable button, confirm when the shell asks, and resolve with the API's
 * answer and when it came (epoch ms, comparable with the pages' Date.now()).
 */
async function changePlugin(page: Page, button: string, action: 'enable' | 'disable', id: string, onDialog?: () => Promise<void>) {
  const answered = page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname.endsWith(`/api/v1/plugins/${id}/${action}`), { timeout: 15_000 });
  answered.catch(() => undefined);
  await page.locator(button).click();
  const confirm = page.locator(sel.confirm);
  const first = await Promise.race([answered.then(() => 'answered' as const), confirm.waitFor({ state: 'visible', timeout: 15_000 }).then(() => 'dialog' as const)]);
  let confirmedAt = Date.now();
  if (first === 'dialog') {
    await onDialog?.();
    confirmedAt = Date.now();
    await confirm.click();
  }
  const response = await answered;
  return { response, confirmedAt, answeredAt: Date.now() };
}

async function pluginStates(core: TestCore): Promise<Record<string, string>> {
  const res = await core.client.get<{ items: { id: string; state: string }[] }>('/api/v1/plugins');
  return Object.fromEntries(res.body.items.map((p) => [p.id, p.state]));
}

// ---------------------------------------------------------------------------------------------

let core: TestCore;
let baseCore: TestCore;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** Contexts a test opened besides the main one, closed after the file. */
const extraContexts: BrowserContext[] = [];
const openPages = new Set<Page>();
const shotsDir = mkdtempSync(path.join(os.tmpdir(), 'aiplat-e2e-shots-'));

/** Run a test body; on failure, screenshot every open page and name the folder in the error. */
function step(name: string, body: () => Promise<void>, timeoutMs?: number): void {
  it(
    name,
    async () => {
      currentTest = name;
      try {
        await body();
      } catch (error) {
        const slug = name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60);
        const taken: string[] = [];
        let i = 0;
        for (const p of openPages) {
          if (p.isClosed()) continue;
          const file = path.join(shotsDir, `${slug}-${++i}.png`);
          try {
            await p.screenshot({ path: file, fullPage: true, timeout: 5000 });
            taken.push(`${file} (${p.url()})`);
          } catch {
            /* a page that cannot be captured */
          }
        }
        if (error instanceof Error && taken.length > 0) error.message += `\nscreenshots:\n  ${taken.join('\n  ')}`;
        throw error;
      }
    },
    timeoutMs,
  );
}

async function newPage(ctx: BrowserContext): Promise<Page> {
  const p = await ctx.newPage();
  openPages.add(p);
  p.on('close', () => openPages.delete(p));
  return p;
}

const WRONG_PASSWORD_TEST = 'redirects to the sign-in page and refuses a wrong password with the translated error message';

describe('web shell in Chromium', () => {
  beforeAll(async () => {
    // `npm test` built the UI already; run alone, build whatever is stale (quick when nothing is).
    buildUiIfStale();
    for (const file of ['web-shell/dist/index.html', 'examples/hello/web/dist/remoteEntry.js']) {
      if (!existsSync(path.join(ROOT, file))) throw new Error(`${file} is missing after building the UI`);
    }
    // Started side by side; whatever did start is stopped in afterAll even when another failed.
    const [main, based, launched] = await Promise.allSettled([
      // Two simulated GPU nodes (a fake nvidia-smi replaying a real capture: no GPU here) for the GPUs widget.
      startTestCore({ plugins: ['examples', FIXTURE_PLUGINS], config: { simulatedGpus: 'v100s-8', simulatedNodes: 2 } }),
      startTestCore({ plugins: ['examples'], config: { publicUrl: `http://127.0.0.1${BASE_PATH}` } }),
      launchChromium(),
    ]);
    if (main.status === 'fulfilled') core = main.value;
    if (based.status === 'fulfilled') baseCore = based.value;
    if (launched.status === 'fulfilled') browser = launched.value;
    for (const result of [main, based, launched]) if (result.status === 'rejected') throw result.reason;
    context = await browser.newContext({ locale: 'en-US', viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(10_000);
    context.on('page', watchConsole);
    page = await newPage(context);
  });

  afterAll(async () => {
    for (const ctx of extraContexts) await ctx.close().catch(() => undefined);
    await browser?.close();
    await Promise.all([core?.stop(), baseCore?.stop()]);
  });

  step(WRONG_PASSWORD_TEST, async () => {
    await page.goto(`${core.url}/`);
    await page.waitForURL(`${core.url}/login`);
    await signIn(page, 'not-the-password');
    const shown = await waitForText(page, sel.loginError, new RegExp(en.login.failed));
    // Translated by error code (invalid_credentials), not the server's English message.
    expect(shown).toContain(sdkErrorMessages.en.errors.invalid_credentials);
    expect(new URL(page.url()).pathname).toBe('/login');
  });

  step('signs in and shows the dashboard with the core widgets and the navigation', async () => {
    // Several widgets subscribe to the stream at once: they must share one connection (one ticket).
    const tickets: string[] = [];
    const countTickets = (request: { url(): string }) => {
      if (request.url().endsWith('/api/v1/stream/ticket')) tickets.push(request.url());
    };
    page.on('request', countTickets);
    await signIn(page);
    await page.waitForURL(`${core.url}/`);
    await page.locator(sel.nav).waitFor();
    await waitForText(page, sel.pageTitle, en.dashboard.title);
    await waitForText(page, sel.navDashboard, en.nav.dashboard);
    await waitForText(page, sel.navPlugins, en.nav.plugins);
    await waitForText(page, sel.navHello, 'Hello');
    await page.locator(sel.systemWidget).waitFor();
    await page.locator('[data-test=plugins-widget]').waitFor();
    // The GPUs widget: the simulated nodes are labelled as such, with their free cards.
    await eventually('the GPUs widget', () => text(page.locator('[data-test=node-sim-001]')), (t) => t.includes(en.dashboard.simulated) && t.includes('8 of 8 GPUs free · Tesla V100S-PCIE-32GB'));
    expect(await page.locator('[data-test=gpus-widget] [data-test=simulated-tag]').count()).toBe(2);
    expect(await page.locator(`${sel.helloWidget} ${sel.anyRemoteError}`).count()).toBe(0);
    await page.locator('[data-test=stream-status].console__live--open').waitFor();
    page.off('request', countTickets);
    expect(tickets).toHaveLength(1);
  });

  step('opens the hello page from the navigation; submitting shows the greeting and a count that goes up', async () => {
    await page.locator(sel.navHello).click();
    await page.waitForURL(`${core.url}/hello`);
    await waitForText(page, sel.pageTitle, 'Greeter');
    const name = 'Ada Lovelace';
    // hello-shout is enabled: the API upper-cases the greeting; the page shows what the API says.
    const expected = (await core.client.get<{ greeting: string }>(`/api/plugins/hello/greeting?name=${encodeURIComponent(name)}`)).body.greeting;
    expect(expected).toBe(`HELLO, ${name.toUpperCase()}`);
    await page.locator(sel.helloName).fill(name);
    await page.locator(sel.helloSubmit).click();
    await page.locator(sel.helloResult).waitFor();
    await waitForText(page, sel.helloGreeting, new RegExp(escapeRegExp(expected)));
    await waitForText(page, sel.helloCount, helloCount(1));
    await page.locator(sel.helloSubmit).click();
    await waitForText(page, sel.helloCount, helloCount(2));
    await waitForText(page, sel.helloGreeting, new RegExp(escapeRegExp(expected)));
    expect(await page.locator(sel.anyRemoteError).count()).toBe(0);
  });

  step('a plugin whose remote answers 404 shows an error card naming it; the rest keeps working', async () => {
    const entry = `${core.url}/_remotes/${BROKEN.id}/remoteEntry.js?v=${BROKEN.version}`;
    expect((await fetch(entry)).status).toBe(404);
    // Its page: a full error card naming the plugin and the error.
    await page.locator(sel.navBroken).click();
    await page.waitForURL(`${core.url}${BROKEN.page}`);
    const card = page.locator(sel.remoteError(BROKEN.id));
    await card.waitFor();
    const cardText = await text(card);
    const failedTitle = en.remote.failedTitle.replace('{plugin}', BROKEN.name);
    expect(cardText).toContain(failedTitle);
    expect(cardText).toMatch(new RegExp(`${BROKEN.id}: \\S`)); // the plugin id, then the error
    expect(cardText).toContain(en.remote.failedHint);
    // The dashboard: the broken widget is a compact error card; hello's widget and the core's render.
    await page.locator(sel.navDashboard).click();
    await page.waitForURL(`${core.url}/`);
    const compact = page.locator(`${sel.brokenWidget} ${sel.remoteError(BROKEN.id)}`);
    await compact.waitFor();
    const compactText = await text(compact);
    expect(compactText).toContain(failedTitle);
    expect(compactText).toMatch(new RegExp(`${BROKEN.id}: \\S`));
    expect(compactText).not.toContain(en.remote.failedHint); // compact: no hint, no reload button
    await page.locator(sel.systemWidget).waitFor();
    await eventually('hello widget rendered', () => text(page.locator(sel.helloWidget)), (t) => t.length > 'Greetings'.length);
    expect(await page.locator(`${sel.helloWidget} ${sel.anyRemoteError}`).count()).toBe(0);
    // Navigation still works: back to the hello page, which loads and greets.
    await page.locator(sel.navHello).click();
    await page.waitForURL(`${core.url}/hello`);
    await page.locator(sel.helloName).waitFor();
    expect(await page.locator(sel.anyRemoteError).count()).toBe(0);
  });

  step('switches to zh-CN: navigation, page titles, the plugins page and the hello page are in Chinese', async () => {
    await page.locator(sel.navDashboard).click();
    await page.waitForURL(`${core.url}/`);
    await switchLocale(page, 'zh-CN');
    expect(zh.nav.dashboard).toBe('仪表盘');
    await waitForText(page, sel.navDashboard, '仪表盘');
    await waitForText(page, sel.navPlugins, zh.nav.plugins);
    await waitForText(page, sel.navHello, '你好示例'); // the nav contribution's zh-CN title
    await waitForText(page, sel.pageTitle, zh.dashboard.title);
    await eventually('the system widget in Chinese', () => text(page.locator(sel.systemWidget)), (t) => t.includes(zh.dashboard.version));
    await eventually('the GPUs widget in Chinese', () => text(page.locator('[data-test=node-sim-002]')), (t) => t.includes('模拟') && t.includes('8 块 GPU 中 8 块空闲'));
    await eventually('the hello widget in Chinese', () => text(page.locator(sel.helloWidget)), (t) => t.startsWith('问候统计')); // its zh-CN title
    expect(await page.evaluate('document.documentElement.lang')).toBe('zh-CN');

    await page.locator(sel.navPlugins).click();
    await page.waitForURL(`${core.url}/plugins`);
    await waitForText(page, sel.pageTitle, zh.nav.plugins);
    // The list shows each plugin's state, translated.
    await eventually('the hello row in Chinese', () => text(page.locator(sel.pluginRow('hello'))), (t) => t.includes(sdkMessages['zh-CN'].aip.status.enabled));

    await page.locator(sel.navHello).click();
    await page.waitForURL(`${core.url}/hello`);
    await waitForText(page, sel.pageTitle, '问候'); // the page contribution's zh-CN title
    await waitForText(page, sel.helloSubmit, helloZh.form.submit);
    await eventually('the hello page in Chinese', () => text(page.locator('body')), (t) => t.includes(helloZh.form.title) && t.includes(helloZh.list.title));

    await switchLocale(page, 'en');
    await waitForText(page, sel.pageTitle, 'Greeter');
    await waitForText(page, sel.helloSubmit, helloEn.form.submit);
    expect(await page.evaluate('document.documentElement.lang')).toBe('en');
  });

  step('disabling hello with its dependent in the plugins page removes its navigation entry in a second open page within a second; enabling brings it back', async () => {
    // A second tab of the same browser, signed in by the shared session, on the dashboard. It stays
    // in the background while the first tab works; it records in-page when hello's navigation entry
    // leaves or joins the DOM (a MutationObserver runs in a background tab, animation frames do not).
    const second = await newPage(context);
    await second.goto(`${core.url}/`);
    await second.locator(sel.navHello).waitFor();
    await second.evaluate(`(() => {
      window.__notReloaded = true;
      window.__navLog = [];
      let present = !!document.querySelector(${JSON.stringify(sel.navHello)});
      new MutationObserver(() => {
        const now = !!document.querySelector(${JSON.stringify(sel.navHello)});
        if (now !== present) window.__navLog.push({ present: (present = now), at: Date.now() });
      }).observe(document.body, { childList: true, subtree: true });
    })()`);
    /** Epoch ms at which the second tab's hello entry last became `present` (polls the in-page log). */
    const navChange = (present: boolean) =>
      eventually(
        `hello's navigation entry ${present ? 'back' : 'gone'} in the second page`,
        async () => ((await second.evaluate('window.__navLog')) as { present: boolean; at: number }[]).filter((e) => e.present === present).pop()?.at,
        (at) => at !== undefined,
        10_000,
      ) as Promise<number>;

    // Clicks need animation frames: work in the first tab in front.
    await page.bringToFront();
    await page.locator(sel.navPlugins).click();
    await page.waitForURL(`${core.url}/plugins`);
    await page.locator(sel.pluginRow('hello')).waitFor();
    await page.locator(sel.pluginRow('hello-shout')).waitFor();

    const disabled = await changePlugin(page, sel.pluginDisable('hello'), 'disable', 'hello', async () => {
      // The confirmation names the dependent it will disable along.
      const list = await eventually('the cascade list', () => text(page.locator(sel.cascadeList)), (t) => t.length > 0);
      expect(list).toMatch(/hello-shout|Hello, shouted/);
    });
    expect(disabled.response.status()).toBe(200);
    const goneAt = await navChange(false);
    expect(goneAt - disabled.answeredAt, `gone ${goneAt - disabled.answeredAt} ms after the disable answer`).toBeLessThanOrEqual(1000);
    expect(await pluginStates(core)).toMatchObject({ hello: 'disabled', 'hello-shout': 'disabled' });
    expect(await second.locator(sel.navHello).count()).toBe(0);
    await eventually('hello widget removed in the second page', () => second.locator(sel.helloWidget).count(), (n) => n === 0, 2000);
    // The first page's own navigation follows too.
    await page.locator(sel.navHello).waitFor({ state: 'detached', timeout: 2000 });

    // Enable both again: hello first (hello-shout depends on it).
    const enabled = await changePlugin(page, sel.pluginEnable('hello'), 'enable', 'hello');
    expect(enabled.response.status()).toBe(200);
    const backAt = await navChange(true);
    expect(backAt - enabled.answeredAt, `back ${backAt - enabled.answeredAt} ms after the enable answer`).toBeLessThanOrEqual(1000);
    console.log(
      `[e2e] live navigation in a second tab: gone ${goneAt - disabled.answeredAt} ms after the disable answer ` +
        `(${goneAt - disabled.confirmedAt} ms after the confirm click); back ${backAt - enabled.answeredAt} ms after the enable answer`,
    );
    const shout = await changePlugin(page, sel.pluginEnable('hello-shout'), 'enable', 'hello-shout');
    expect(shout.response.status()).toBe(200);
    expect(await pluginStates(core)).toMatchObject({ hello: 'enabled', 'hello-shout': 'enabled' });
    await second.bringToFront();
    await second.locator(sel.helloWidget).waitFor();
    expect(await second.evaluate('window.__notReloaded')).toBe(true);

    // hello works again from the second page, upper-cased since hello-shout is back.
    await second.locator(sel.navHello).click();
    await second.waitForURL(`${core.url}/hello`);
    const expected = (await core.client.get<{ greeting: string }>('/api/plugins/hello/greeting?name=Grace')).body.greeting;
    expect(expected).toBe('HELLO, GRACE');
    await second.locator(sel.helloName).fill('Grace');
    await second.locator(sel.helloSubmit).click();
    await waitForText(second, sel.helloGreeting, new RegExp(escapeRegExp(expected)));
    await waitForText(second, sel.helloCount, helloCount(1));
    await second.close();
    await page.bringToFront();
  }, 90_000);

  step('works under a base path: PUBLIC_URL http://127.0.0.1/aiplat, the prefix not stripped by a proxy', async () => {
    const ctx = await browser.newContext({ locale: 'en-US', viewport: { width: 1280, height: 800 } });
    extraContexts.push(ctx);
    ctx.setDefaultTimeout(10_000);
    ctx.on('page', watchConsole);
    const p = await newPage(ctx);
    const requested: string[] = [];
    p.on('request', (r) => requested.push(r.url()));
    const origin = baseCore.url;
    await p.goto(`${origin}${BASE_PATH}/`);
    await p.waitForURL(`${origin}${BASE_PATH}/login`);
    await signIn(p);
    await p.waitForURL(`${origin}${BASE_PATH}/`);
    await p.locator(sel.systemWidget).waitFor();
    await p.locator(sel.navHello).click();
    await p.waitForURL(`${origin}${BASE_PATH}/hello`);
    await p.locator(sel.helloName).waitFor();
    await waitForText(p, sel.pageTitle, 'Greeter');
    expect(await p.locator(sel.anyRemoteError).count()).toBe(0);
    // The API answers under the prefix too.
    await p.locator(sel.helloName).fill('Lin');
    await p.locator(sel.helloSubmit).click();
    await waitForText(p, sel.helloGreeting, 'HELLO, LIN');
    await waitForText(p, sel.helloCount, helloCount(1));
    const sameOrigin = requested.filter((u) => u.startsWith(`${origin}/`)).map((u) => new URL(u).pathname);
    expect(sameOrigin.filter((pathname) => pathname.startsWith(`${BASE_PATH}/_remotes/hello/`)).length).toBeGreaterThan(0);
    expect(sameOrigin.filter((pathname) => pathname.startsWith(`${BASE_PATH}/assets/`)).length).toBeGreaterThan(0);
    expect(sameOrigin).toContain(`${BASE_PATH}/api/plugins/hello/greetings`);
    expect(sameOrigin.filter((pathname) => pathname !== BASE_PATH && !pathname.startsWith(`${BASE_PATH}/`))).toEqual([]);
    await ctx.close();
  });

  step('no uncaught error and no console error in any page during the run, except the broken remote’s 404', async () => {
    const origins = [core.url, baseCore.url];
    const unexpected = problems.filter((p) => !expectedProblem(p, origins));
    expect(unexpected, JSON.stringify(unexpected, null, 2)).toEqual([]);
    // The broken remote was requested and failed, as planned.
    expect(problems.some((p) => expectedProblem(p, origins) && p.url.includes(`/_remotes/${BROKEN.id}/`))).toBe(true);
  });
});

function escapeRegExp(value: string): string {
  return value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
