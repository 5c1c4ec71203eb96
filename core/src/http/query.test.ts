import { describe, expect, it } from 'vitest';
import { queryOf } from './route-contract.js';

describe('a route’s query object', () => {
  it('decodes as URLSearchParams does and gathers repeated keys into arrays', () => {
    expect(queryOf('')).toEqual({});
    expect(queryOf('name=Ada')).toEqual({ name: 'Ada' });
    expect(queryOf('tag=a+b&tag=%C3%A9t%C3%A9&tag=3&empty=&bare&odd=100%&bad=%E0%A4%A')).toEqual({
      tag: ['a b', 'été', '3'],
      empty: '',
      bare: '',
      odd: '100%',
      bad: '\uFFFD%A',
    });
  });

  it('keeps keys named like Object.prototype’s members as plain own values, and never touches the prototype', () => {
    const q = queryOf('__proto__=x&__proto__=y&toString=1&constructor=c&hasOwnProperty=h');
    expect(Object.getPrototypeOf(q)).toBe(Object.prototype);
    expect(Object.entries(q)).toEqual([
      ['__proto__', ['x', 'y']],
      ['toString', '1'],
      ['constructor', 'c'],
      ['hasOwnProperty', 'h'],
    ]);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});
