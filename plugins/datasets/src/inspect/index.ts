/**
 * The datasets plugin's file inspection: what a file is (`fileKind`), a bounded look inside it
 * (`previewFile`) and a check of LLM training records (`validateFile`). It works on local paths
 * and knows nothing of versions or storage, so the routes, the import job and other plugins
 * (`@aiplat-plugins/datasets/inspect`) can all use it.
 */
export { DatasetInspectError } from './types.js';
export type { FileKind, Preview, ValidationReport } from './types.js';
export { fileKind } from './kind.js';
export { previewFile, type PreviewOptions } from './preview.js';
export { validateFile } from './validate.js';
