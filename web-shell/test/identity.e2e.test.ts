/**
 * The identity pages in Chromium, against a real core: an administrator creates a user in the
 * users page; that user signs in, makes a personal API token in "API tokens" (shown once) that
 * works against the API with its scope, and changes their password from the user menu; the roles
 * page shows the permission matrix, the audit log lists what happened. Debian's Chromium through
 * playwright-core; the UI is built when stale.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startTestCore, TEST_ADMIN_PASSWORD, type TestCore } from '@aiplat/testing';
import { buildUiIfStale, launchChromium } from './browser.js';

describe('identity pages in Chromium', () => {
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  async function signIn(username: string, password: string) {
    await page.goto(`${core.url}/login`);
    await page.fill('[data-test=username]', username);
    await page.fill('[data-test=password]', password);
    await page.click('[data-test=login-submit]');
    await page.waitForURL(`${core.url}/`);
  }

  beforeAll(async () => {
    buildUiIfStale();
    [core, browser] = await Promise.all([startTestCore({ plugins: ['examples'] }), launchChromium()]);
    const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(`${error.name}: ${error.message}`));
  });
  afterAll(async () => {
    await browser?.close();
    await core?.stop();
  });

  it('an administrator creates a user in the users page', async () => {
    await signIn('admin', TEST_ADMIN_PASSWORD);
    await page.click('[data-test=nav-users]');
    await page.waitForURL(`${core.url}/admin/users`);
    await page.click('[data-test=users-create]');
    await page.fill('[data-test=user-username]', 'irene');
    await page.fill('[data-test=user-password]', 'short');
    await page.click('[data-test=user-submit]');
    // The policy is checked in the form first: nothing is sent.
    expect((await core.client.get('/api/v1/users?q=irene')).body.items).toEqual([]);
    await page.fill('[data-test=user-password]', 'irene-password-1234');
    await page.click('[data-test=user-submit]');
    await page.locator('[data-test=user-row-irene]').waitFor();
    const created = (await core.client.get('/api/v1/users?q=irene')).body.items;
    expect(created).toHaveLength(1);
    expect(created[0].username).toBe('irene');
  });

  it('the user makes an API token that is shown once and works with its scope only', async () => {
    await page.click('[data-test=user-menu]');
    await page.click('[data-test=sign-out]');
    await page.waitForURL(/\/login/);
    await signIn('irene', 'irene-password-1234');
    await page.goto(`${core.url}/account/tokens`);
    await page.click('[data-test=tokens-create]');
    await page.fill('[data-test=token-name]', 'ci');
    await page.click('[data-test="token-perm-greetings:read"]');
    await page.click('[data-test=token-submit]');
    const token = (await page.locator('[data-test=token-value]').innerText()).trim();
    expect(token).toMatch(/^aip_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const bot = core.client.withToken(token);
    expect((await bot.get('/api/plugins/hello/greeting?name=A')).status).toBe(200);
    expect((await bot.get('/api/v1/plugins')).status).toBe(403);
    await page.click('[data-test=token-reveal-done]');
    await page.locator('[data-test=token-row-ci]').waitFor();
    // Once closed, the value is gone from the page: it cannot be shown again.
    await expect.poll(async () => (await page.content()).includes(token)).toBe(false);
  });

  it('the user changes their password from the user menu and signs in with the new one', async () => {
    await page.click('[data-test=user-menu]');
    await page.click('[data-test=menu-password]');
    await page.fill('[data-test=password-current]', 'irene-password-1234');
    await page.fill('[data-test=password-new]', 'irene-new-password-99');
    await page.fill('[data-test=password-repeat]', 'irene-new-password-99');
    await page.click('[data-test=password-submit]');
    await page.waitForURL(/\/login/);
    await signIn('irene', 'irene-new-password-99');
    expect((await core.client.anonymous().post('/api/v1/auth/login', { username: 'irene', password: 'irene-password-1234' })).status).toBe(401);
  });

  it('shows the permission matrix and the audit log to an administrator', async () => {
    await page.click('[data-test=user-menu]');
    await page.click('[data-test=sign-out]');
    await page.waitForURL(/\/login/);
    await signIn('admin', TEST_ADMIN_PASSWORD);
    await page.goto(`${core.url}/admin/roles`);
    await page.locator('[data-test=permission-matrix]').waitFor();
    expect(await page.locator('[data-test="matrix-viewer-greetings:read"]').count()).toBe(1);
    await page.goto(`${core.url}/admin/audit`);
    await page.locator('[data-test=audit-table]').waitFor();
    await page.click('[data-test=audit-verify]');
    await expect.poll(() => page.locator('[data-test=audit-verify-result]').getAttribute('data-ok')).toBe('true');
    expect(pageErrors).toEqual([]);
  });
});
