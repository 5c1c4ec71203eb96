/**
 * A runtime's `optionsSchema` (JSON Schema) as form fields: an enum becomes a select, a boolean a
 * switch, an integer or a number a number input with the schema's bounds, a string a text input.
 * Objects and arrays are not offered (what the schema defaults them to applies, or the value kept
 * from the revision being changed).
 */
export type OptionValue = string | number | boolean;

export interface OptionField {
  key: string;
  kind: 'enum' | 'boolean' | 'number' | 'string';
  integer: boolean;
  /** A `null` in the type: the field may be left empty. */
  nullable: boolean;
  values: OptionValue[];
  default: OptionValue | null;
  min?: number;
  max?: number;
  step?: number;
  maxLength?: number;
  title: unknown;
  description: unknown;
  required: boolean;
}

type Schema = { properties?: Record<string, Record<string, unknown>>; required?: string[] };

export function optionFields(schema: Record<string, unknown> | null | undefined): OptionField[] {
  const s = (schema ?? {}) as Schema;
  const required = new Set(Array.isArray(s.required) ? s.required : []);
  const fields: OptionField[] = [];
  for (const [key, p] of Object.entries(s.properties ?? {})) {
    if (!p || typeof p !== 'object') continue;
    const types = Array.isArray(p.type) ? (p.type as string[]) : typeof p.type === 'string' ? [p.type] : [];
    const type = types.find((x) => x !== 'null') ?? '';
    const values = Array.isArray(p.enum) ? (p.enum.filter((v) => ['string', 'number', 'boolean'].includes(typeof v)) as OptionValue[]) : [];
    const kind = values.length ? 'enum' : type === 'boolean' ? 'boolean' : type === 'integer' || type === 'number' ? 'number' : type === 'string' ? 'string' : undefined;
    if (!kind) continue;
    const min = typeof p.minimum === 'number' ? p.minimum : typeof p.exclusiveMinimum === 'number' ? p.exclusiveMinimum : undefined;
    const max = typeof p.maximum === 'number' ? p.maximum : typeof p.exclusiveMaximum === 'number' ? p.exclusiveMaximum : undefined;
    const nullable = types.includes('null') || (Array.isArray(p.enum) && p.enum.includes(null));
    const field: OptionField = {
      key,
      kind,
      integer: type === 'integer',
      nullable,
      values,
      default: null,
      min,
      max,
      step: typeof p.multipleOf === 'number' ? p.multipleOf : type === 'integer' ? 1 : undefined,
      maxLength: typeof p.maxLength === 'number' ? p.maxLength : undefined,
      title: p.title,
      description: p.description,
      required: required.has(key),
    };
    const fallback: OptionValue | null = nullable ? null : kind === 'enum' ? values[0]! : kind === 'boolean' ? false : kind === 'number' ? (min ?? 0) : '';
    field.default = p.default !== undefined && (p.default === null ? nullable : optionValid(field, p.default)) ? (p.default as OptionValue | null) : fallback;
    fields.push(field);
  }
  return fields;
}

export function optionValid(f: OptionField, v: unknown): boolean {
  if (v === null) return f.nullable;
  if (f.kind === 'enum') return f.values.includes(v as OptionValue);
  if (f.kind === 'boolean') return typeof v === 'boolean';
  if (f.kind === 'string') return typeof v === 'string' && (f.maxLength === undefined || v.length <= f.maxLength);
  return typeof v === 'number' && Number.isFinite(v) && (!f.integer || Number.isInteger(v)) && (f.min === undefined || v >= f.min) && (f.max === undefined || v <= f.max);
}

/**
 * The options to send: each field's value when valid for the schema, else its default; keys the
 * form does not render (objects, arrays) kept from `values` as they are. An empty optional string
 * without a default is left out.
 */
export function completeOptions(fields: OptionField[], values: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const known = new Set(fields.map((f) => f.key));
  for (const [key, value] of Object.entries(values)) if (!known.has(key)) out[key] = value;
  for (const f of fields) {
    const v = optionValid(f, values[f.key]) ? values[f.key] : f.default;
    if (v === null && !f.nullable) continue;
    if (f.kind === 'string' && v === '' && !f.required && (f.default === '' || f.default === null)) continue;
    out[f.key] = v;
  }
  return out;
}

/** Keeps of `values` what the schema knows (a runtime change drops the other runtime's options). */
export function keepKnown(schema: Record<string, unknown> | null | undefined, values: Record<string, unknown>): Record<string, unknown> {
  const props = ((schema ?? {}) as Schema).properties ?? {};
  return Object.fromEntries(Object.entries(values).filter(([k]) => k in props));
}
