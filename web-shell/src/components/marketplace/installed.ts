/**
 * What the plugins pages (PluginsView, PluginDetailsView) use of the marketplace for installed
 * plugins — the package actions and their dialogs, the updates list, the package an installed
 * plugin came from — imported dynamically, so those pages' entries in the first load stay as small
 * as they were.
 */
export { default as PackageActions } from './PackageActions.vue';
export { default as PackageDialogs } from './PackageDialogs.vue';
export { formatDateTime, listUpdates, packageOf } from './shared.ts';
import { marketplaceDetails, packageOf, type InstalledPackage } from './shared.ts';

/**
 * What the marketplace knows of an installed package (signature, publisher, the version installed
 * before it) for when the plugins API says no more than that it was installed from a package; null
 * when no registry lists the plugin.
 */
export async function packageFacts(id: string): Promise<InstalledPackage | null> {
  try {
    const details = await marketplaceDetails(id);
    return packageOf(details.installed, details.installed?.version ?? '');
  } catch {
    return null;
  }
}
