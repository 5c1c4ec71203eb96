import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsImport from 'ajv-formats';
import { AiplatError, type JsonSchema } from '@aiplat/plugin-sdk';

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsImport as unknown as (ajv: Ajv) => Ajv;

function makeAjv(options: { coerceTypes: boolean; useDefaults: boolean }): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: false, ...options });
  addFormats(ajv);
  ajv.addKeyword({ keyword: 'x-secret', schemaType: 'boolean' });
  return ajv;
}

const bodyAjv = makeAjv({ coerceTypes: false, useDefaults: true });
const queryAjv = makeAjv({ coerceTypes: true, useDefaults: true });
const configAjv = makeAjv({ coerceTypes: false, useDefaults: true });

/**
 * Object schemas refuse fields they do not name unless they say otherwise: a typo in a field
 * name is an error the caller hears about, not a silently ignored value.
 */
export function closeObjects(schema: JsonSchema): JsonSchema {
  if (Array.isArray(schema)) return schema.map((s) => (typeof s === 'object' && s ? closeObjects(s as JsonSchema) : s)) as unknown as JsonSchema;
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'properties' || key === 'patternProperties' || key === '$defs' || key === 'definitions') {
      out[key] = Object.fromEntries(
        Object.entries(value as Record<string, JsonSchema>).map(([k, v]) => [k, typeof v === 'object' && v ? closeObjects(v) : v]),
      );
    } else if (typeof value === 'object' && value !== null && !['enum', 'const', 'default', 'examples', 'required'].includes(key)) {
      out[key] = closeObjects(value as JsonSchema);
    } else {
      out[key] = value;
    }
  }
  const isObject = out.type === 'object' || (out.properties !== undefined && out.type === undefined);
  if (isObject && out.additionalProperties === undefined && out.patternProperties === undefined && out.unevaluatedProperties === undefined) {
    out.additionalProperties = false;
  }
  return out;
}

function describe(error: ErrorObject, root: string): { path: string; message: string } {
  const where = error.instancePath ? error.instancePath.slice(1).replace(/\//g, '.') : root;
  const params = error.params as Record<string, unknown>;
  let message: string;
  switch (error.keyword) {
    case 'additionalProperties':
      return { path: where === root ? String(params.additionalProperty) : `${where}.${String(params.additionalProperty)}`, message: `unknown field "${String(params.additionalProperty)}"` };
    case 'required':
      return { path: where === root ? String(params.missingProperty) : `${where}.${String(params.missingProperty)}`, message: `"${String(params.missingProperty)}" is required` };
    case 'minLength':
      message = `must be at least ${String(params.limit)} character${params.limit === 1 ? '' : 's'} long`;
      break;
    case 'maxLength':
      message = `must be at most ${String(params.limit)} characters long`;
      break;
    case 'type':
      message = `must be ${String(params.type)}`;
      break;
    case 'enum':
      message = `must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
      break;
    default:
      message = error.message ?? 'is not valid';
  }
  return { path: where, message };
}

export type Validator = (value: unknown) => unknown;

function validator(ajv: Ajv, schema: JsonSchema, what: string, code: 'validation_failed' = 'validation_failed'): Validator {
  const validate: ValidateFunction = ajv.compile(closeObjects(schema));
  return (value: unknown) => {
    if (validate(value)) return value;
    throw validationError(validate.errors, what, code);
  };
}

function validationError(errors: ErrorObject[] | null | undefined, what: string, code: 'validation_failed' = 'validation_failed'): AiplatError {
  const problems = (errors ?? []).map((e) => describe(e, what));
  const unique = problems.filter((p, i) => problems.findIndex((q) => q.path === p.path && q.message === p.message) === i);
  const message = unique.map((p) => (p.path === what ? `${what} ${p.message}` : `${p.path}: ${p.message}`)).join('; ');
  return new AiplatError(code, `Invalid ${what}: ${message}`, { problems: unique });
}

export function bodyValidator(schema: JsonSchema): Validator {
  return validator(bodyAjv, schema, 'request body');
}
export function queryValidator(schema: JsonSchema): Validator {
  return validator(queryAjv, schema, 'query');
}
export function paramsValidator(schema: JsonSchema): Validator {
  return validator(queryAjv, schema, 'path');
}

/** Settings are validated with defaults applied; secrets are ordinary strings here. */
export function configValidator(schema: JsonSchema): (value: unknown) => { ok: true; value: Record<string, unknown> } | { ok: false; message: string } {
  const validate = configAjv.compile(schema);
  return (value: unknown) => {
    const copy = structuredClone(value ?? {}) as Record<string, unknown>;
    if (validate(copy)) return { ok: true, value: copy };
    return {
      ok: false,
      message: (validate.errors ?? []).map((e) => describe(e, 'config')).map((p) => `${p.path}: ${p.message}`).join('; '),
    };
  };
}

export interface SettingsValidator {
  /** The settings with defaults applied (a copy); a 400 `validation_failed` naming the fields otherwise. */
  validate(value: unknown): Record<string, unknown>;
  /** A copy with defaults applied, whether or not the value is valid (for showing stored settings). */
  withDefaults(value: unknown): Record<string, unknown>;
}

const settingsValidators = new WeakMap<JsonSchema, SettingsValidator>();

/** Settings written through the API: closed objects like every request body, defaults applied. */
export function settingsValidator(schema: JsonSchema): SettingsValidator {
  let cached = settingsValidators.get(schema);
  if (!cached) {
    const compiled = configAjv.compile(closeObjects(schema));
    cached = {
      validate: (value) => {
        const copy = structuredClone(value ?? {}) as Record<string, unknown>;
        if (compiled(copy)) return copy;
        throw validationError(compiled.errors, 'settings');
      },
      withDefaults: (value) => {
        const copy = structuredClone(value ?? {}) as Record<string, unknown>;
        compiled(copy);
        return copy;
      },
    };
    settingsValidators.set(schema, cached);
  }
  return cached;
}
