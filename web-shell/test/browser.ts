/**
 * What every browser test and `npm run bench:shell` need before they start: the UI built (whatever
 * is stale; quick when nothing is) and Debian's Chromium launched headless through playwright-core
 * (never a downloaded browser; AIPLAT_CHROMIUM names another one).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { TEST_ADMIN_PASSWORD } from '@aiplat/testing';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
export const CHROMIUM = process.env.AIPLAT_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

/** Build the shell and the plugin remotes that changed (`npm test` did already; a test run alone may not have). */
export function buildUiIfStale(options: { echo?: boolean } = {}): void {
  const build = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build-ui.mjs'), '--if-stale'], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: options.echo ? 'inherit' : 'pipe',
  });
  if (build.status !== 0) throw new Error(`node scripts/build-ui.mjs --if-stale failed:\n${build.stdout ?? ''}\n${build.stderr ?? ''}`);
  if (!existsSync(path.join(ROOT, 'web-shell', 'dist', 'index.html'))) throw new Error('web-shell/dist/index.html is missing after building the UI');
}

export function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not at ${CHROMIUM}: run scripts/provision-chromium.sh (apt-get install -y chromium), or set AIPLAT_CHROMIUM`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/**
 * A page of a fresh browser context (English, `viewport`, 10 s default timeout) signed in as the
 * bootstrap admin of `coreUrl`; page errors are pushed to `pageErrors`.
 */
export async function openSignedIn(browser: Browser, coreUrl: string, pageErrors: string[], viewport = { width: 1360, height: 900 }): Promise<Page> {
  const context = await browser.newContext({ locale: 'en-US', viewport });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(`${error.name}: ${error.message}`));
  await page.goto(`${coreUrl}/login`);
  await page.fill('[data-test=username]', 'admin');
  await page.fill('[data-test=password]', TEST_ADMIN_PASSWORD);
  await page.click('[data-test=login-submit]');
  await page.waitForURL(`${coreUrl}/`);
  return page;
}

/** The whole page: the console scrolls inside its main area, so the window grows to fit it first. */
export async function fullPageScreenshot(page: Page, file: string): Promise<void> {
  const height = (await page.evaluate(
    "(() => { const main = document.querySelector('.console__main'); return main ? main.scrollHeight + main.getBoundingClientRect().top : document.body.scrollHeight; })()",
  )) as number;
  const size = page.viewportSize()!;
  await page.setViewportSize({ width: size.width, height: Math.max(size.height, Math.ceil(height)) });
  await page.waitForTimeout(300);
  await page.screenshot({ path: file });
  await page.setViewportSize(size);
}
