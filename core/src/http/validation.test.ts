import { describe, expect, it } from 'vitest';
import { isAiplatError } from '@aiplat/plugin-sdk';
import { bodyValidator, closeObjects, queryValidator } from './validation.js';

describe('closeObjects', () => {
  it('refuses unknown fields in nested objects unless a schema opts out', () => {
    const closed = closeObjects({
      type: 'object',
      properties: { a: { type: 'object', properties: { b: { type: 'string' } } }, open: { type: 'object', additionalProperties: true } },
    });
    expect(closed).toEqual({
      type: 'object',
      additionalProperties: false,
      properties: {
        a: { type: 'object', additionalProperties: false, properties: { b: { type: 'string' } } },
        open: { type: 'object', additionalProperties: true },
      },
    });
  });

  it('leaves enum and default values alone', () => {
    const schema = { type: 'object', properties: { mode: { enum: [{ type: 'object' }] }, x: { type: 'object', default: { properties: 1 } } } };
    const closed = closeObjects(schema) as { properties: Record<string, Record<string, unknown>> };
    expect(closed.properties.mode!.enum).toEqual([{ type: 'object' }]);
    expect(closed.properties.x!.default).toEqual({ properties: 1 });
  });
});

describe('validators', () => {
  const catchError = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      return error;
    }
    throw new Error('expected a throw');
  };

  it('report every problem with its path, as a validation_failed error', () => {
    const validate = bodyValidator({ type: 'object', required: ['name'], properties: { name: { type: 'string' }, size: { type: 'integer' } } });
    const error = catchError(() => validate({ size: 'big', extra: 1 }));
    expect(isAiplatError(error)).toBe(true);
    expect((error as { code: string }).code).toBe('validation_failed');
    expect((error as Error).message).toBe('Invalid request body: name: "name" is required; extra: unknown field "extra"; size: must be integer');
  });

  it('coerce query strings and apply defaults', () => {
    const validate = queryValidator({ type: 'object', properties: { limit: { type: 'integer', default: 20 }, all: { type: 'boolean' } } });
    expect(validate({ all: 'true' })).toEqual({ all: true, limit: 20 });
  });
});
