/**
 * The shapes the datasets plugin answers for `GET /versions/:vid/preview` and `…/validate`
 * (see the plugin's README), and the one error this library throws.
 */

export type { FileKind, Preview, TablePreview, ValidationReport } from '../../api/types.js';

/**
 * A file that cannot be inspected as asked: not the format its name says, a broken image, a
 * training file whose format cannot be told. The message names the file by its dataset path and
 * says what is wrong, so a route can pass it on as is (typically as a 422).
 */
export class DatasetInspectError extends Error {
  details?: Record<string, unknown>;

  constructor(message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'DatasetInspectError';
    if (details) this.details = details;
  }
}
