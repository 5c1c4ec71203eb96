/**
 * The plugin marketplace in Chromium against a real core reading a real registry service
 * (registry/) with real packages signed by a key the core trusts (core/test/fixtures/packages.ts),
 * plus a registry address that does not answer: the catalogue lists the plugins and names the
 * unreachable registry without breaking; search (debounced, in the address) narrows it and an
 * empty search says so; a plugin's page renders its README, versions, changelog and permissions,
 * and a README carrying script is rendered without it; an incompatible plugin cannot be installed
 * and says why; notes 1.0.0 is installed through the consent dialog (signed-by line, its
 * permission with its default roles) and its progress bar reaches success; the plugins page then
 * shows "update available" and upgrades it (the consent marks nothing new), and its marketplace
 * page rolls it back; a package changed after signing is refused with the translated code; an
 * unsigned plugin is refused until the admin allow-lists it, then installs; uninstall removes it;
 * the pages speak zh-CN. Screenshots under /tmp.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Locator, Page } from 'playwright-core';
import { startTestCore, type TestCore } from '@aiplat/testing';
import { generateKeyPair, packFolder, publicKeyOf, writeSignature } from '@aiplat/plugin-sdk/package';
import { startRegistry, type RunningRegistry } from '../../registry/src/server.js';
import { hashToken } from '../../registry/src/publishers.js';
import { notesPackage, publish } from '../../core/test/fixtures/packages.js';
import { sdkErrorMessages } from '../../plugin-sdk/web/error-messages.js';
import shellMessages from '../src/locales/shell.js';
import marketplaceMessages from '../src/locales/marketplace.js';
import { buildUiIfStale, fullPageScreenshot, launchChromium, openSignedIn } from './browser.js';

const en = { ...shellMessages.en, ...marketplaceMessages.en };
const zh = { ...shellMessages['zh-CN'], ...marketplaceMessages['zh-CN'] };
const SHOTS = {
  catalogue: '/tmp/aiplat-marketplace.png',
  plugin: '/tmp/aiplat-marketplace-plugin.png',
  versions: '/tmp/aiplat-marketplace-versions.png',
  consent: '/tmp/aiplat-marketplace-consent.png',
  progress: '/tmp/aiplat-marketplace-installed.png',
  installedPage: '/tmp/aiplat-marketplace-plugin-installed.png',
  plugins: '/tmp/aiplat-marketplace-plugins-update.png',
  details: '/tmp/aiplat-marketplace-plugin-details.png',
  upgrade: '/tmp/aiplat-marketplace-upgrade.png',
  refused: '/tmp/aiplat-marketplace-upload-refused.png',
  unsignedConsent: '/tmp/aiplat-marketplace-unsigned-consent.png',
  allowlist: '/tmp/aiplat-marketplace-allowlist.png',
  uninstall: '/tmp/aiplat-marketplace-uninstall.png',
  catalogueZh: '/tmp/aiplat-marketplace-zh.png',
  pluginZh: '/tmp/aiplat-marketplace-plugin-zh.png',
  consentZh: '/tmp/aiplat-marketplace-consent-zh.png',
  pluginDark: '/tmp/aiplat-marketplace-plugin-dark-zh.png',
};
/** A README that tries to run script in the console: rendered, none of it may survive. */
const HOSTILE_README = `# Fancy

| Column | Value |
| --- | --- |
| one | 1 |

\`\`\`sh
npm run fancy
\`\`\`

See [the docs](https://example.com/docs).

<script>window.__pwned = 'script'</script>
<img src="x" onerror="window.__pwned = 'onerror'">
<a href="javascript:window.__pwned = 'link'">click</a>
<iframe src="https://example.com"></iframe>
`;

/** An address where no registry answers (connection refused at once). */
const DEAD_REGISTRY = 'http://127.0.0.1:9';

const key = generateKeyPair('acme');
const token = 'publisher-token-for-the-marketplace-e2e';

const q = (value: string) => JSON.stringify(value);
const dt = (value: string) => `[data-test=${q(value)}]`;

describe('the plugin marketplace in Chromium', () => {
  let work: string;
  let registry: RunningRegistry;
  let core: TestCore;
  let browser: Browser;
  let page: Page;
  let tamperedFile: string;
  const pageErrors: string[] = [];

  const screenshot = (file: string) => fullPageScreenshot(page, file);
  /** A dialog or drawer once its opening animation (and a progress bar's) has finished. */
  const dialogShot = async (file: string) => {
    await page.waitForTimeout(700);
    await page.screenshot({ path: file });
  };
  const card = (id: string) => page.locator(dt(`marketplace-card-${id}`));
  const cardIds = () => page.locator('[data-test^=marketplace-card-]').evaluateAll((els) => els.map((e) => e.getAttribute('data-test')!.replace('marketplace-card-', '')));
  const installedVersion = async (id: string) => {
    const res = await core.client.get<{ version: string; state: string }>(`/api/v1/plugins/${id}`);
    return res.status === 200 ? res.body.version : null;
  };

  /** The visible dialog's progress, until its operation ends. */
  async function waitForOutcome(dialog: Locator): Promise<string> {
    const progress = dialog.locator('[data-test=operation-progress]');
    await progress.waitFor({ timeout: 20_000 });
    await expect.poll(() => progress.getAttribute('data-state'), { timeout: 60_000, interval: 200 }).toMatch(/^(succeeded|failed|cancelled)$/);
    return (await progress.getAttribute('data-state'))!;
  }

  async function openMarketplace() {
    await page.click('[data-test=nav-marketplace]');
    await page.waitForURL(`${core.url}/marketplace`);
    await card('notes').waitFor({ timeout: 20_000 });
  }

  async function openPlugin(id: string) {
    await page.goto(`${core.url}/marketplace/${id}`);
    await page.locator('[data-test=mp-plugin-title]').waitFor({ timeout: 20_000 });
  }

  async function upload(file: string) {
    await page.click('[data-test=marketplace-upload]');
    const dialog = page.locator('[data-test=upload-dialog]');
    await dialog.waitFor();
    await page.setInputFiles('[data-test=upload-file]', file);
    await expect.poll(() => dialog.locator('[data-test=upload-file-name]').innerText()).toBe(path.basename(file));
    await dialog.locator('[data-test=upload-submit]').click();
    return dialog;
  }

  beforeAll(async () => {
    buildUiIfStale();
    work = mkdtempSync(path.join(os.tmpdir(), 'aiplat-marketplace-e2e-'));
    registry = await startRegistry({
      dataDir: path.join(work, 'registry'),
      port: 0,
      host: '127.0.0.1',
      publishers: [{ name: 'acme', tokenSha256: hashToken(token), keys: [publicKeyOf(key)] }],
    });
    const signed: Parameters<typeof notesPackage>[0][] = [
      { version: '1.0.0', key },
      { version: '2.0.0', columns: [{ name: '002_priority', column: 'priority' }], key },
      { id: 'notes-extra', version: '1.0.0', dependencies: { notes: '^1.0.0' }, key },
      { id: 'future', version: '1.0.0', engines: '^9.0.0', key },
      // Published unsigned: the core installs it only when allow-listed.
      { id: 'loose', version: '1.0.0' },
    ];
    for (const pkg of signed) {
      const { file } = await notesPackage(pkg, work);
      const published = await publish(registry.url, token, readFileSync(file));
      expect(published.status, JSON.stringify(published.body)).toBe(201);
    }
    // A README with script in it, signed and published as it is.
    const fancy = await notesPackage({ id: 'fancy', version: '1.0.0', key }, work);
    writeFileSync(path.join(fancy.dir, 'README.md'), HOSTILE_README);
    await writeSignature(fancy.dir, { key });
    await packFolder(fancy.dir, fancy.file);
    const published = await publish(registry.url, token, readFileSync(fancy.file));
    expect(published.status, JSON.stringify(published.body)).toBe(201);
    // Changed after it was signed: a registry refuses to publish it, so it arrives as an upload.
    tamperedFile = (await notesPackage({ id: 'tampered', version: '1.0.0', key, tamper: true }, path.join(work))).file;
    const keysFile = path.join(work, 'trusted-keys.json');
    writeFileSync(keysFile, JSON.stringify([publicKeyOf(key)]));
    [core, browser] = await Promise.all([
      startTestCore({ plugins: ['examples/hello'], config: { registries: [registry.url, DEAD_REGISTRY], trustedKeysFile: keysFile } }),
      launchChromium(),
    ]);
    page = await openSignedIn(browser, core.url, pageErrors);
  }, 600_000);

  afterAll(async () => {
    await browser?.close();
    await core?.stop();
    await registry?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('lists the registry’s plugins, names the unreachable registry, searches as you type', async () => {
    await openMarketplace();
    expect(await page.locator('[data-test=page-title]').innerText()).toBe(en.nav.marketplace);
    expect((await cardIds()).sort()).toEqual(['fancy', 'future', 'loose', 'notes', 'notes-extra']);
    // The dead registry is named with the reason; the rest of the page works.
    const dead = page.locator(dt(`marketplace-source-error-${DEAD_REGISTRY}`));
    await dead.waitFor();
    expect(await dead.innerText()).toContain(DEAD_REGISTRY);
    expect(await page.locator(dt(`marketplace-source-${DEAD_REGISTRY}`)).getAttribute('data-ok')).toBe('false');
    expect(await page.locator(dt(`marketplace-source-${registry.url}`)).getAttribute('data-ok')).toBe('true');
    // Tags: signed or not, compatible or not.
    expect(await card('notes').locator('[data-test=card-signed]').innerText()).toBe(en.marketplace.tags.signed);
    expect(await card('loose').locator('[data-test=card-unsigned]').innerText()).toBe(en.marketplace.tags.unsigned);
    expect(await card('future').locator('[data-test=card-incompatible]').innerText()).toBe(en.marketplace.tags.incompatible);
    expect(await card('notes').innerText()).toContain('v2.0.0');
    expect(await card('notes').innerText()).toContain('acme');
    await screenshot(SHOTS.catalogue);

    await page.fill('[data-test=marketplace-search]', 'extra');
    await expect.poll(cardIds).toEqual(['notes-extra']);
    expect(new URL(page.url()).searchParams.get('q')).toBe('extra');
    await page.fill('[data-test=marketplace-search]', 'nothing-is-called-this');
    const empty = page.locator('[data-test=marketplace-empty]');
    await empty.waitFor();
    expect(await empty.getAttribute('data-reason')).toBe('filtered');
    expect(await empty.innerText()).toContain(en.marketplace.empty.filtered);
    await page.click('[data-test=marketplace-clear-filters]');
    await expect.poll(async () => (await cardIds()).length).toBe(5);
  });

  it('a plugin’s page: README rendered, versions, changelog, permissions', async () => {
    await card('notes').click();
    await page.waitForURL(/\/marketplace\/notes/);
    const title = page.locator('[data-test=mp-plugin-title]');
    await title.waitFor();
    expect(await title.innerText()).toBe('Notes notes');
    const readme = page.locator('[data-test=mp-plugin-readme]');
    await readme.waitFor();
    expect(await readme.locator('h1').innerText()).toBe('Notes notes');
    expect(await readme.locator('strong').innerText()).toBe('notes');
    expect(await page.locator('[data-test=mp-plugin-compatibility-text]').innerText()).toBe(en.marketplace.plugin.compatibleWith.replace('{range}', '^1.0.0'));
    expect(await page.locator('[data-test=mp-plugin-compatibility-text]').getAttribute('title')).toContain('works with this core');
    await screenshot(SHOTS.plugin);

    await page.click('#tab-versions');
    const versions = page.locator('[data-test=mp-plugin-versions]');
    await versions.waitFor();
    expect(await versions.locator(dt('mp-version-2.0.0')).innerText()).toContain(en.marketplace.versions.latest);
    await versions.locator(dt('mp-version-1.0.0')).waitFor();
    await screenshot(SHOTS.versions);

    await page.click('#tab-changelog');
    await expect.poll(() => page.locator('[data-test=mp-plugin-changelog]').innerText()).toContain('2.0.0');

    await page.click('#tab-permissions');
    const permission = page.locator(`[data-test=mp-plugin-permissions] ${dt('permission-notes:read')}`);
    await permission.waitFor();
    expect(await permission.innerText()).toContain('Read notes');
    expect(await permission.innerText()).toContain('viewer');
    expect(await permission.innerText()).toContain('operator');
  });

  it('a README carrying script is rendered without it', async () => {
    await openPlugin('fancy');
    const readme = page.locator('[data-test=mp-plugin-readme]');
    await readme.waitFor();
    expect(await readme.locator('table td').allInnerTexts()).toEqual(['one', '1']);
    expect(await readme.locator('pre code').innerText()).toContain('npm run fancy');
    const link = readme.locator('a', { hasText: 'the docs' });
    expect(await link.getAttribute('href')).toBe('https://example.com/docs');
    expect(await link.getAttribute('target')).toBe('_blank');
    expect(await link.getAttribute('rel')).toContain('noopener');
    expect(await readme.locator('script, iframe, [onerror]').count()).toBe(0);
    const hostileLink = readme.locator('a', { hasText: 'click' });
    expect(await hostileLink.getAttribute('href')).toBeNull();
    await page.waitForTimeout(300);
    expect(await page.evaluate('window.__pwned')).toBeUndefined();
  });

  it('an incompatible plugin says why and cannot be installed', async () => {
    await openPlugin('future');
    const alert = page.locator('[data-test=mp-plugin-compatibility]');
    await alert.waitFor();
    expect(await alert.innerText()).toMatch(/needs plugin API \^9\.0\.0/);
    expect(await page.locator('[data-test=mp-plugin-install]').isDisabled()).toBe(true);
  });

  it('installs notes 1.0.0 through the consent dialog; the progress bar reaches success', async () => {
    await openPlugin('notes');
    await page.click('#tab-versions');
    await page.locator(dt('mp-version-install-1.0.0')).click();
    const dialog = page.locator('[data-test=consent-dialog]');
    await dialog.locator('[data-test=consent-accept]').waitFor();
    // Who signed it, what it may do and with which roles, what it needs.
    await dialog.locator('[data-test=consent-signed]').waitFor();
    expect(await dialog.locator('[data-test=consent-signed]').innerText()).toContain('acme');
    expect(await dialog.locator('[data-test=consent-signed]').innerText()).toContain(key.keyId);
    const permission = dialog.locator(dt('permission-notes:read'));
    expect(await permission.innerText()).toContain('Read notes');
    expect(await permission.innerText()).toContain('notes:read');
    expect(await permission.innerText()).toContain('viewer');
    expect(await dialog.innerText()).toContain(en.marketplace.consent.noDependencies);
    expect(await dialog.locator('.el-dialog__title').innerText()).toBe('Install Notes notes v1.0.0');
    await dialogShot(SHOTS.consent);

    await dialog.locator('[data-test=consent-accept]').click();
    expect(await waitForOutcome(dialog)).toBe('succeeded');
    expect(await dialog.locator('[data-test=operation-bar]').getAttribute('data-percent')).toBe('100');
    expect(await dialog.locator('[data-test=operation-title]').innerText()).toBe('Notes notes v1.0.0 is installed');
    await dialogShot(SHOTS.progress);
    expect(await installedVersion('notes')).toBe('1.0.0');
    await dialog.locator('[data-test=consent-close]').click();
    await dialog.waitFor({ state: 'hidden' });

    // The page follows: installed, from a signed package, an update to 2.0.0 offered.
    await page.locator('[data-test=mp-plugin-installed]').waitFor();
    expect(await page.locator('[data-test=mp-plugin-installed]').innerText()).toBe('Installed 1.0.0');
    await page.locator('[data-test=mp-plugin-installed-card]').waitFor();
    expect(await page.locator('[data-test=mp-plugin-installed-signature]').innerText()).toBe(en.marketplace.signature.signed);
    await page.locator('[data-test=mp-plugin-update]').waitFor();
    await screenshot(SHOTS.installedPage);
  });

  it('the plugins page shows the update; upgrade, then roll back', async () => {
    await page.click('[data-test=nav-plugins]');
    await page.waitForURL(`${core.url}/plugins`);
    const update = page.locator('[data-test=plugin-update-notes]');
    await update.waitFor({ timeout: 20_000 });
    expect(await update.innerText()).toBe('Update 2.0.0');
    // Shipped plugins have no package actions.
    expect(await page.locator('[data-test=package-more-hello]').count()).toBe(0);
    await screenshot(SHOTS.plugins);

    await page.click('[data-test=package-upgrade-notes]');
    const dialog = page.locator('[data-test=consent-dialog]');
    await dialog.locator('[data-test=consent-accept]').waitFor();
    // The same permission as before: nothing is marked new.
    await dialog.locator(dt('permission-notes:read')).waitFor();
    expect(await dialog.locator('.el-dialog__title').innerText()).toBe('Upgrade Notes notes to v2.0.0');
    expect(await dialog.locator('[data-test=permission-new]').count()).toBe(0);
    await dialogShot(SHOTS.upgrade);
    await dialog.locator('[data-test=consent-accept]').click();
    expect(await waitForOutcome(dialog)).toBe('succeeded');
    expect(await installedVersion('notes')).toBe('2.0.0');
    await dialog.locator('[data-test=consent-close]').click();
    await expect.poll(() => page.locator('[data-test=plugin-row-notes]').innerText()).toContain('2.0.0');
    await expect.poll(() => page.locator('[data-test=plugin-update-notes]').count()).toBe(0);

    // Its plugin page in the marketplace knows the version installed before: roll back to it.
    await openPlugin('notes');
    await page.click('[data-test=package-more-notes]');
    await page.locator('[data-test=package-rollback-notes]:visible').click();
    const rollback = page.locator('[data-test=rollback-dialog]');
    await rollback.locator('[data-test=change-confirm]').waitFor();
    expect(await rollback.innerText()).toContain('v1.0.0');
    await rollback.locator('[data-test=change-confirm]').click();
    expect(await waitForOutcome(rollback)).toBe('succeeded');
    expect(await installedVersion('notes')).toBe('1.0.0');
    await rollback.locator('[data-test=change-close]').click();
    await expect.poll(() => page.locator('[data-test=mp-plugin-installed]').innerText()).toBe('Installed 1.0.0');
    await page.click('[data-test=nav-plugins]');
    await expect.poll(() => page.locator('[data-test=plugin-update-notes]').count(), { timeout: 20_000 }).toBe(1);

    // Its details page: where it came from, the update, the package actions; a shipped plugin has none.
    await page.click('[data-test=plugin-link-notes]');
    const origin = page.locator('[data-test=plugin-origin]');
    await origin.waitFor();
    await expect.poll(() => origin.getAttribute('data-origin')).toBe('package');
    await expect.poll(() => page.locator('[data-test=plugin-signature]').innerText()).toBe(en.marketplace.signature.signed);
    await page.locator('[data-test=plugin-update]').waitFor();
    await page.locator('[data-test=package-more-notes]').waitFor();
    await page.locator('[data-test=plugin-in-marketplace]').waitFor();
    await screenshot(SHOTS.details);
    await page.goto(`${core.url}/plugins/hello`);
    await expect.poll(() => page.locator('[data-test=plugin-origin]').getAttribute('data-origin')).toBe('bundled');
    expect(await page.locator('[data-test=package-more-hello]').count()).toBe(0);
  });

  it('a package changed after signing is refused, translated by its code', async () => {
    await openMarketplace();
    const dialog = await upload(tamperedFile);
    expect(await waitForOutcome(dialog)).toBe('failed');
    const error = dialog.locator('[data-test=operation-error]');
    expect(await error.getAttribute('data-code')).toBe('package_modified');
    expect(await error.innerText()).toContain(sdkErrorMessages.en.errors.package_modified);
    expect((await dialog.locator('[data-test=operation-error-detail]').innerText()).length).toBeGreaterThan(0);
    await dialogShot(SHOTS.refused);
    await dialog.locator('[data-test=upload-close]').click();
    expect(await installedVersion('tampered')).toBeNull();
  });

  it('an unsigned plugin is refused until the admin allow-lists it, then installs', async () => {
    await openPlugin('loose');
    expect(await page.locator('[data-test=mp-plugin-unsigned]').innerText()).toBe(en.marketplace.tags.unsigned);
    await page.click('[data-test=mp-plugin-install]');
    const dialog = page.locator('[data-test=consent-dialog]');
    await dialog.locator('[data-test=consent-unsigned]').waitFor();
    await dialog.locator('[data-test=consent-not-allowlisted]').waitFor();
    await dialogShot(SHOTS.unsignedConsent);
    await dialog.locator('[data-test=consent-accept]').click();
    expect(await waitForOutcome(dialog)).toBe('failed');
    expect(await dialog.locator('[data-test=operation-error]').getAttribute('data-code')).toBe('package_unsigned');
    expect(await dialog.locator('[data-test=operation-error]').innerText()).toContain(sdkErrorMessages.en.errors.package_unsigned);
    await dialog.locator('[data-test=consent-close]').click();
    await dialog.waitFor({ state: 'hidden' });

    // From the consent itself: the allow-list, with the plugin's id filled in.
    await page.click('[data-test=mp-plugin-install]');
    await dialog.locator('[data-test=consent-open-allowlist]').click();
    const drawer = page.locator('[data-test=allowlist-drawer]');
    await drawer.locator('[data-test=allowlist-table]').waitFor();
    expect(await page.locator('[data-test=allowlist-id]').inputValue()).toBe('loose');
    await page.fill('[data-test=allowlist-id]', 'Not An Id');
    await page.click('[data-test=allowlist-add]');
    await drawer.locator('[data-test=allowlist-id-invalid]').waitFor();
    await page.fill('[data-test=allowlist-id]', 'loose');
    await page.fill('[data-test=allowlist-note]', 'reviewed in the e2e test');
    await page.click('[data-test=allowlist-add]');
    await drawer.locator('[data-test=allowlist-entry-loose]').waitFor();
    expect(await drawer.innerText()).toContain('reviewed in the e2e test');
    expect(await drawer.innerText()).toContain('admin');
    await dialogShot(SHOTS.allowlist);
    await drawer.locator('.el-drawer__close-btn').click();
    await drawer.waitFor({ state: 'hidden' });

    // The consent now says it will install; it does.
    await dialog.locator('[data-test=consent-allowlisted]').waitFor();
    await dialog.locator('[data-test=consent-accept]').click();
    expect(await waitForOutcome(dialog)).toBe('succeeded');
    expect(await installedVersion('loose')).toBe('1.0.0');
    await dialog.locator('[data-test=consent-close]').click();
    await page.locator('[data-test=mp-plugin-installed-signature]').waitFor();
    expect(await page.locator('[data-test=mp-plugin-installed-signature]').innerText()).toBe(en.marketplace.signature.unsigned);
  });

  it('uninstalls from the plugin’s page, keeping its data', async () => {
    await openPlugin('notes');
    await page.click('[data-test=package-more-notes]');
    await page.locator('[data-test=package-uninstall-notes]:visible').click();
    const dialog = page.locator('[data-test=uninstall-dialog]');
    await dialog.locator('[data-test=change-confirm]').waitFor();
    expect(await dialog.innerText()).toContain(en.marketplace.change.keepData);
    await dialogShot(SHOTS.uninstall);
    await dialog.locator('[data-test=change-confirm]').click();
    expect(await waitForOutcome(dialog)).toBe('succeeded');
    expect(await dialog.locator('[data-test=operation-title]').innerText()).toBe('Notes notes is uninstalled');
    await dialog.locator('[data-test=change-close]').click();
    expect(await installedVersion('notes')).toBeNull();
    // Back to "not installed": the install button returns.
    await page.locator('[data-test=mp-plugin-install]').waitFor({ timeout: 20_000 });
    expect(await page.locator('[data-test=mp-plugin-installed]').count()).toBe(0);
  });

  it('speaks zh-CN', async () => {
    await page.click('[data-test=nav-marketplace]');
    await page.locator('[data-test=language-switch]').click();
    await page.locator('[data-test=locale-zh-CN]:visible').click();
    await expect.poll(() => page.locator('[data-test=page-title]').innerText()).toBe(zh.nav.marketplace);
    expect(await page.locator('[data-test=nav-marketplace]').innerText()).toBe(zh.nav.marketplace);
    await card('notes').waitFor();
    expect(await card('notes').locator('[data-test=card-signed]').innerText()).toBe(zh.marketplace.tags.signed);
    expect(await page.locator(dt(`marketplace-source-error-${DEAD_REGISTRY}`)).innerText()).toContain(zh.marketplace.sources.unreachable.replace('{name}', DEAD_REGISTRY));
    await screenshot(SHOTS.catalogueZh);
    await card('notes').click();
    await page.locator('[data-test=mp-plugin-readme]').waitFor();
    expect(await page.locator('[data-test=mp-plugin-title]').innerText()).toBe('笔记 notes');
    expect(await page.locator('#tab-readme').innerText()).toBe(zh.marketplace.plugin.tabs.readme);
    await screenshot(SHOTS.pluginZh);
    await page.click('[data-test=mp-plugin-install]');
    const dialog = page.locator('[data-test=consent-dialog]');
    await dialog.locator(dt('permission-notes:read')).waitFor();
    expect(await dialog.locator(dt('permission-notes:read')).innerText()).toContain('读取笔记');
    expect((await dialog.locator('[data-test=consent-accept]').innerText()).trim()).toBe(zh.marketplace.consent.acceptInstall);
    await dialogShot(SHOTS.consentZh);
    await dialog.locator('[data-test=consent-cancel]').click();
    await dialog.waitFor({ state: 'hidden' });
    // The dark theme: the same page, in Element Plus's dark colours.
    await page.click('[data-test=theme-switch]');
    await screenshot(SHOTS.pluginDark);
    await page.click('[data-test=theme-switch]');
    expect(pageErrors).toEqual([]);
  });
});
