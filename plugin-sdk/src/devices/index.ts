/**
 * `@aiplat/plugin-sdk/devices`: vendor tools' output read into the SDK's device types, for device
 * providers and node connectors (the core's local provider and the docker plugin's remote hosts
 * use the same parser).
 */
export * from './nvidia-smi.js';
export * from './nvidia-smi-csv.js';
export * from './nvidia-smi-list.js';
