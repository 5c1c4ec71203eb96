/**
 * The one error catalog. Every error the API answers carries one of these codes;
 * the web shell translates messages by code (en, zh-CN).
 */
export const errorCatalog = {
  bad_request: { status: 400, message: 'The request is not valid.' },
  invalid_json: { status: 400, message: 'The request body is not valid JSON.' },
  validation_failed: { status: 400, message: 'The request does not match the expected shape.' },
  unauthenticated: { status: 401, message: 'Sign in first: the request has no valid credentials.' },
  invalid_credentials: { status: 401, message: 'The username or password is wrong.' },
  forbidden: { status: 403, message: 'You do not have the permission this action needs.' },
  not_found: { status: 404, message: 'Nothing was found at this address.' },
  plugin_not_found: { status: 404, message: 'No plugin with this id is installed.' },
  method_not_allowed: { status: 405, message: 'This address does not accept this method.' },
  conflict: { status: 409, message: 'The request conflicts with the current state.' },
  plugin_has_dependents: { status: 409, message: 'Other enabled plugins depend on this plugin.' },
  plugin_dependencies_disabled: { status: 409, message: 'This plugin needs plugins that are not enabled.' },
  plugin_failed: { status: 409, message: 'The plugin could not be loaded.' },
  plugin_exists: { status: 409, message: 'A plugin with this id is already installed.' },
  plugin_not_installed: { status: 409, message: 'This plugin was not installed from a package, so it cannot be upgraded, rolled back or uninstalled.' },
  plugin_install_busy: { status: 409, message: 'Another plugin install, upgrade, rollback or uninstall is running.' },
  plugin_incompatible: { status: 422, message: 'The plugin does not work with this core or with the installed plugins.' },
  plugin_dependency_missing: { status: 422, message: 'A plugin this package needs is not installed and cannot be found in a registry.' },
  package_invalid: { status: 422, message: 'The file is not a valid plugin package.' },
  package_unsafe: { status: 422, message: 'The package holds paths or links that could write outside its folder.' },
  package_too_large: { status: 413, message: 'The package is larger than this core accepts.' },
  package_bundles_host_library: { status: 422, message: 'The package carries its own copy of a library the host provides.' },
  package_modified: { status: 422, message: 'The package was changed after it was signed.' },
  package_unsigned: { status: 422, message: 'The package is not signed by a trusted publisher, and no administrator has allowed this plugin unsigned.' },
  registry_unreachable: { status: 502, message: 'The plugin registry could not be reached.' },
  version_not_found: { status: 404, message: 'No published version matches.' },
  secret_key_missing: { status: 409, message: 'Secret settings cannot be stored until the server has AIPLAT_SECRET_KEY set.' },
  unprocessable: { status: 422, message: 'The request is well formed, but what it points at cannot be used (a file that is not what it should be).' },
  unschedulable: { status: 422, message: 'The workload can never be scheduled as it is.' },
  node_unreachable: { status: 422, message: 'The node could not be reached.' },
  payload_too_large: { status: 413, message: 'The request body is larger than this route accepts.' },
  unsupported_media_type: { status: 415, message: 'The request body has a content type this route does not accept.' },
  rate_limited: { status: 429, message: 'Too many requests: slow down and try again.' },
  internal: { status: 500, message: 'Something went wrong on the server. The request id identifies it in the logs.' },
  unavailable: { status: 503, message: 'The service is not available right now.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorCatalog;

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown; requestId?: string };
}

/** An error that the HTTP layer turns into `{ error: { code, message, details } }` with the catalog's status. */
export class AiplatError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: unknown;

  constructor(code: ErrorCode, message?: string, details?: unknown) {
    super(message ?? errorCatalog[code].message);
    this.name = 'AiplatError';
    this.code = code;
    this.status = errorCatalog[code].status;
    this.details = details;
  }
}

export function isAiplatError(value: unknown): value is AiplatError {
  return value instanceof Error && (value as { name?: string }).name === 'AiplatError' && 'code' in value;
}
