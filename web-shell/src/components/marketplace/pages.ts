/**
 * The marketplace's two pages, loaded together as one lazy chunk when either route is first opened
 * (router.ts): the dialogs they open come with them, so the dashboard's first load carries only the
 * routes' names of a handful of files, and nothing of the marketplace's code.
 */
export { default as MarketplaceView } from '../../views/MarketplaceView.vue';
export { default as MarketplacePluginView } from '../../views/MarketplacePluginView.vue';
