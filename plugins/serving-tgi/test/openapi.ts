/**
 * TGI's published OpenAPI schema (test/fixtures/tgi-openapi-3.3.6.json, see SOURCE.md) as validators,
 * with ajv (JSON Schema draft-07: the schema's `exclusiveMinimum` values are numbers, as in
 * draft-06 and later). OpenAPI 3.0's `nullable` is ajv's own keyword where the schema has a `type`;
 * the small conversion below turns the remaining `nullable` (beside an `allOf`/`$ref`, where ajv
 * refuses it) into `anyOf: [..., {type: null}]`. `example` is an annotation; `discriminator` is ajv's
 * option. Also: an example instance of a schema, built from the schema's own `example` values.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const TGI_VERSION = '3.3.6';
export const OPENAPI_FILE = path.join(HERE, 'fixtures', `tgi-openapi-${TGI_VERSION}.json`);
export const LAUNCHER_FILE = path.join(HERE, 'fixtures', `tgi-launcher-${TGI_VERSION}.md`);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Schema = { [k: string]: Json };

export const openapi = JSON.parse(readFileSync(OPENAPI_FILE, 'utf8')) as {
  openapi: string;
  info: { version: string };
  paths: Record<string, Record<string, Schema>>;
  components: { schemas: Record<string, Schema> };
};

/** OpenAPI 3.0 `nullable` without `type` → `anyOf` with null (ajv accepts `nullable` only beside `type`). */
function convert(node: Json): Json {
  if (Array.isArray(node)) return node.map(convert);
  if (node === null || typeof node !== 'object') return node;
  const out: Schema = {};
  for (const [k, v] of Object.entries(node)) out[k] = k === 'example' || k === 'default' ? v : convert(v);
  if (out.nullable === true && out.type === undefined) {
    delete out.nullable;
    return { anyOf: [out, { type: 'null' }] };
  }
  return out;
}

const ajv = new Ajv({ allErrors: true, discriminator: true, strictTypes: false });
ajv.addKeyword({ keyword: 'example' });
// The document's root holds the schemas (its $refs are `#/components/schemas/<name>`).
ajv.addKeyword({ keyword: 'components' });
ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isInteger(n) });
ajv.addFormat('float', { type: 'number', validate: () => true });
ajv.addFormat('double', { type: 'number', validate: () => true });
ajv.addSchema({ $id: 'tgi', components: { schemas: convert(openapi.components.schemas as unknown as Json) } });

const validators = new Map<string, ValidateFunction>();
/** A validator for `#/components/schemas/<name>`. */
export function validator(name: string): ValidateFunction {
  const known = validators.get(name);
  if (known) return known;
  if (!openapi.components.schemas[name]) throw new Error(`TGI's schema has no ${name}`);
  const v = ajv.compile({ $ref: `tgi#/components/schemas/${name}` });
  validators.set(name, v);
  return v;
}

export function errorsOf(v: ValidateFunction): string {
  return ajv.errorsText(v.errors, { separator: '\n' });
}

function deref(schema: Schema): Schema {
  let s = schema;
  while (typeof s.$ref === 'string') s = openapi.components.schemas[s.$ref.split('/').pop()!]!;
  return s;
}

/**
 * TGI's generator (utoipa) writes many examples as strings whatever the type (`"created": {"type":
 * "integer", "example": "1706270835"}`): such a string is read as the JSON it spells when the type
 * asks for another type (a number, a boolean, an array).
 */
function exampleValue(schema: Schema): Json {
  const e = schema.example!;
  if (typeof e === 'string' && typeof schema.type === 'string' && schema.type !== 'string') {
    try {
      return JSON.parse(e) as Json;
    } catch {
      return e;
    }
  }
  return e;
}

/**
 * An instance of a schema from its own examples: a property's `example` where it has one, else
 * built from its type (required properties, and optional ones that carry an example), the first
 * branch of a `oneOf`, the first value of an `enum`.
 */
export function exampleOf(schema: Schema, depth = 0): Json {
  const s = deref(schema);
  if (depth > 12) return null;
  if (s.example !== undefined) return exampleValue(s);
  if (Array.isArray(s.enum)) return s.enum[0]!;
  if (Array.isArray(s.allOf)) {
    const parts = s.allOf.map((p) => exampleOf(p as Schema, depth + 1));
    return parts.every((p) => p && typeof p === 'object' && !Array.isArray(p)) ? Object.assign({}, ...(parts as object[])) : parts[0]!;
  }
  if (Array.isArray(s.oneOf)) return exampleOf(s.oneOf[0] as Schema, depth + 1);
  switch (s.type) {
    case 'object': {
      const out: Record<string, Json> = {};
      const required = (s.required as string[] | undefined) ?? [];
      for (const [k, p] of Object.entries((s.properties as Record<string, Schema> | undefined) ?? {})) {
        if (required.includes(k) || deref(p).example !== undefined) out[k] = exampleOf(p, depth + 1);
      }
      return out;
    }
    case 'array':
      return [exampleOf(s.items as Schema, depth + 1)];
    case 'string':
      return 'example';
    case 'integer':
      return typeof s.minimum === 'number' ? s.minimum : 0;
    case 'number':
      return typeof s.minimum === 'number' ? s.minimum : 0.5;
    case 'boolean':
      return false;
    default:
      return null;
  }
}

export function schemaNamed(name: string): Schema {
  return openapi.components.schemas[name]!;
}

/** The long options of TGI's documented launcher (`--max-total-tokens` ...), from launcher.md's usage blocks. */
export function documentedLauncherFlags(): Map<string, string[] | null> {
  const text = readFileSync(LAUNCHER_FILE, 'utf8');
  const flags = new Map<string, string[] | null>();
  // Each option is a "## NAME" section with a ```shell block: `      --flag <VALUE>` then its help,
  // with `[possible values: a, b]` or a `Possible values:` list of `- name: help` lines.
  for (const section of text.split(/^## /m).slice(1)) {
    const m = /^\s+(?:-\w, )?(--[a-z0-9-]+)/m.exec(section);
    if (!m) continue;
    let values: string[] | null = null;
    const inline = /\[possible values: ([^\]]+)\]/.exec(section);
    if (inline) values = inline[1]!.split(',').map((v) => v.trim());
    const list = /Possible values:\n((?:\s+- [^\n]+\n)+)/.exec(section);
    if (list) values = [...list[1]!.matchAll(/^\s+- ([a-z0-9-]+):/gm)].map((x) => x[1]!);
    flags.set(m[1]!, values);
  }
  return flags;
}
