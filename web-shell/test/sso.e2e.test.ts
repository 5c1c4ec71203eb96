/**
 * Single sign-on in a real browser: the shell's sign-in page offers "Sign in with SSO", the
 * browser goes to a real OpenID provider (oidc-provider, started here), signs in with its login
 * form, consents, and lands on the dashboard signed in as the SSO user; a refused sign-in shows the
 * translated reason on the sign-in page. The same flow over plain HTTP, with its refusals, is
 * core/test/oidc.db.test.ts.
 *
 * Debian's Chromium (playwright-core, never a downloaded browser); the UI is built when stale.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { readOidcConfig } from '../../core/src/config/oidc-config.js';
import { startTestIdp, type TestIdp } from '../../core/test/helpers/oidc-idp.js';
import shellMessages from '../src/locales/shell.js';
import { buildUiIfStale, launchChromium } from './browser.js';

const en = shellMessages.en;

describe('single sign-on in Chromium', () => {
  let idp: TestIdp;
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    buildUiIfStale();
    idp = await startTestIdp();
    const { config: oidc, problems } = readOidcConfig(
      {
        AIPLAT_OIDC_ISSUER: idp.issuer,
        AIPLAT_OIDC_CLIENT_ID: idp.clientId,
        AIPLAT_OIDC_CLIENT_SECRET: idp.clientSecret,
        AIPLAT_OIDC_SCOPES: 'openid profile email groups',
        AIPLAT_OIDC_LABEL: 'SSO',
      },
      { mappings: [{ group: 'platform', roles: ['Operator'], teams: ['platform'] }] },
      'test',
    );
    expect(problems).toEqual([]);
    [core, browser] = await Promise.all([
      startTestCore({ config: { oidc } }),
      launchChromium(),
    ]);
    idp.register(`${core.url}/api/v1/auth/oidc/callback`);
    idp.accounts.set('carol', { preferred_username: 'carol.sso', name: 'Carol', email: 'carol@example.com', groups: ['platform'] });
    const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1280, height: 800 } });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(`${error.name}: ${error.message}`));
  });

  afterAll(async () => {
    await browser?.close();
    await core?.stop();
    await idp?.stop();
  });

  it('signs in through the identity provider and lands on the dashboard as the SSO user', async () => {
    await page.goto(`${core.url}/login`);
    const button = page.locator('[data-test=login-sso]');
    await button.waitFor();
    expect((await button.innerText()).trim()).toBe('Sign in with SSO');
    await button.click();
    // The provider's own login form, then its consent form.
    await page.waitForURL((url) => url.origin === idp.issuer);
    await page.locator('input[name=login]').fill('carol');
    await page.locator('input[name=password]').fill('any-password');
    await page.locator('button[type=submit]').click();
    await page.locator('input[name=prompt][value=consent]').waitFor({ state: 'attached' });
    await page.locator('button[type=submit]').click();
    // Back at the shell, through /login/sso, on the dashboard.
    await page.waitForURL(`${core.url}/`);
    await page.locator('[data-test=nav]').waitFor();
    const menu = page.locator('[data-test=user-menu]');
    await menu.waitFor();
    expect((await menu.innerText()).trim()).toContain('carol.sso');
    // No token in the address bar or the history; the session is the shell's usual one.
    expect(page.url()).toBe(`${core.url}/`);
    const stored = await page.evaluate<string | null>("localStorage.getItem('aiplat.session')");
    expect(JSON.parse(stored!)).toMatchObject({ accessToken: expect.any(String), refreshToken: expect.any(String) });
    const me = (await core.client.get('/api/v1/users?q=carol')).body.items[0];
    expect(me).toMatchObject({ username: 'carol.sso', source: 'oidc', roles: ['viewer', 'operator'] });
    expect(pageErrors).toEqual([]);
  });

  it('shows why single sign-on failed, translated, on the sign-in page', async () => {
    await page.evaluate("localStorage.removeItem('aiplat.session')");
    await page.goto(`${core.url}/login?sso_error=denied`);
    const alert = page.locator('[data-test=login-sso-error]');
    await alert.waitFor();
    const shown = (await alert.innerText()).replace(/\s+/g, ' ');
    expect(shown).toContain(en.login.ssoFailed);
    expect(shown).toContain(en.login.ssoErrors.denied);
  });
});
