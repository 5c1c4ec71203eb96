/**
 * `@aiplat/cli`: the aiplat-plugin command, also usable from code.
 */
export { main, program } from './main.js';
export { buildPlugin, buildBackend, buildUi, BACKEND_OUT, type BuildResult, type BackendBuild, type UiBuild } from './build.js';
export { packPlugin, stagePackage, PACKAGE_DOCUMENTS, type PackOptions, type PackResult } from './pack.js';
export { keygen, readKeyPair, readTrustedKeys, DEFAULT_KEY_FILE } from './keys.js';
export { signPackage, verifyPackageFile } from './verify.js';
export { publish, type PublishOptions, type PublishResult } from './publish.js';
export { createPlugin, type CreateOptions } from './create.js';
export { dev, DEV_DATA_DIR, DEV_ADMIN_PASSWORD, type DevHandle, type DevOptions } from './dev.js';
export { readPluginFolder, type PluginFolder } from './manifest.js';
export { CliError } from './util.js';
