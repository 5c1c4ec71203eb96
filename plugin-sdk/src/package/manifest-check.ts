/**
 * The manifest schema check the core, the registry and the CLI share: every problem of an
 * `aiplat-plugin.json`, each naming its field in words a person can act on.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { manifestSchema } from '../manifest.js';

const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(manifestSchema);

function describe(e: ErrorObject): string {
  const field = e.instancePath ? e.instancePath.slice(1).replace(/\//g, '.') : '(top level)';
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties':
      return `${field}: unknown field "${String(params.additionalProperty)}"`;
    case 'required':
      return `${field}: "${String(params.missingProperty)}" is required`;
    case 'pattern':
      if (field === 'version') return 'version: must be a semver version such as 1.2.3';
      if (field === 'id') return 'id: must be 3–40 lowercase letters, digits or "-", starting with a letter';
      return `${field}: must match ${String(params.pattern)}`;
    default:
      return `${field}: ${e.message ?? 'is not valid'}`;
  }
}

/** The problems of a parsed manifest against the manifest schema; empty when it is valid. */
export function manifestProblems(raw: unknown): string[] {
  return validate(raw) ? [] : (validate.errors ?? []).map(describe);
}
