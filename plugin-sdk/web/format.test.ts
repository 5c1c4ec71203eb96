// The SDK web part's formatting and error reading, outside a browser (Node has Intl, Response and
// Vue's server renderer): what plugin UIs and the shell show for dates, sizes, numbers and errors.
import { createSSRApp, defineComponent, h, nextTick } from 'vue';
import { renderToString } from 'vue/server-renderer';
import { createI18n } from 'vue-i18n';
import { describe, expect, it } from 'vitest';
import { ApiError, apiErrorFromText, apiErrorOf } from './errors.ts';
import { createFormat, useFormat } from './format.ts';

const AT = '2026-11-26T18:22:19Z';

describe('createFormat', () => {
  const en = createFormat('en');

  it('formats dates and times the way the shell does (24-hour, seconds)', () => {
    const local = new Date(AT);
    const expected = new Intl.DateTimeFormat('en', { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }).format(local);
    expect(en.dateTime(AT)).toBe(expected);
    expect(en.dateTime(local.getTime())).toBe(expected);
    expect(en.dateTime(local)).toBe(expected);
    expect(en.date(AT)).toMatch(/^\d\d\/\d\d\/2026$/);
    expect(createFormat('zh-CN').date(AT)).toMatch(/^2026\/\d\d\/\d\d$/);
  });

  it('shows a dash for no value and the text itself for one that is not a date', () => {
    for (const empty of [null, undefined, '']) {
      expect(en.date(empty)).toBe('—');
      expect(en.dateTime(empty)).toBe('—');
      expect(en.relative(empty)).toBe('—');
    }
    expect(en.dateTime('not a date')).toBe('not a date');
    expect(en.bytes(null)).toBe('—');
    expect(en.number(undefined)).toBe('—');
    expect(en.number(Number.NaN)).toBe('—');
  });

  it('says how long ago, or in how long', () => {
    expect(en.relative(Date.now() - 3 * 86_400_000)).toBe('3 days ago');
    expect(en.relative(Date.now() + 2 * 3_600_000 + 1000)).toBe('in 2 hours');
    expect(en.relative(Date.now() - 2 * 365 * 86_400_000)).toBe('2 years ago');
    expect(createFormat('zh-CN').relative(Date.now() - 86_400_000)).toBe('昨天');
  });

  it('formats sizes in decimal units, one decimal below ten', () => {
    expect(en.bytes(0)).toBe('0 B');
    expect(en.bytes(999)).toBe('999 B');
    expect(en.bytes(1234)).toBe('1.2 kB');
    expect(en.bytes(34_000_000)).toBe('34 MB');
    expect(en.bytes(7_500_000_000)).toBe('7.5 GB');
    expect(en.bytes(12_345_000_000_000_000_000)).toBe('12,345 PB');
  });

  it('groups numbers, and takes Intl options', () => {
    expect(en.number(1234567)).toBe('1,234,567');
    expect(en.number(7_000_000_000, { notation: 'compact' })).toBe('7B');
    expect(createFormat('zh-CN').number(7_000_000_000, { notation: 'compact' })).toBe('70亿');
  });

  it('makes one formatter per language', () => {
    expect(createFormat('en')).toBe(en);
    expect(createFormat('zh-CN')).not.toBe(en);
  });
});

describe('useFormat', () => {
  it("follows the shell's current language", async () => {
    const i18n = createI18n({ legacy: false, locale: 'en', messages: { en: {}, 'zh-CN': {} } });
    let format: ReturnType<typeof useFormat> | undefined;
    const app = createSSRApp(
      defineComponent({
        setup() {
          format = useFormat();
          return () => h('span', format!.number(1234.5));
        },
      }),
    );
    app.use(i18n);
    expect(await renderToString(app)).toBe('<span>1,234.5</span>');
    expect(format!.relative(Date.now() - 86_400_000)).toBe('yesterday');
    i18n.global.locale.value = 'zh-CN';
    await nextTick();
    expect(format!.relative(Date.now() - 86_400_000)).toBe('昨天');
    expect(format!.bytes(1500)).toBe('1.5 kB');
  });
});

describe('apiErrorFromText / apiErrorOf', () => {
  const body = JSON.stringify({ error: { code: 'checksum_mismatch', message: 'The SHA-256 differs', details: { path: 'a.csv' }, requestId: 'req-1' } });

  it("reads the core's error body", () => {
    const error = apiErrorFromText(409, body);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 409, code: 'checksum_mismatch', message: 'The SHA-256 differs', details: { path: 'a.csv' }, requestId: 'req-1' });
  });

  it('falls back to http_<status> with the text for any other body', () => {
    expect(apiErrorFromText(502, '<html>Bad gateway</html>')).toMatchObject({ status: 502, code: 'http_502', message: '<html>Bad gateway</html>' });
    expect(apiErrorFromText(500, 'null')).toMatchObject({ code: 'http_500', message: 'null' });
    expect(apiErrorFromText(503, '', 'Service Unavailable')).toMatchObject({ code: 'http_503', message: 'Service Unavailable' });
    expect(apiErrorFromText(404, undefined)).toMatchObject({ code: 'http_404', message: 'HTTP 404' });
    expect(apiErrorFromText(400, JSON.stringify({ error: { message: 'no code' } }))).toMatchObject({ code: 'http_400', message: 'no code' });
  });

  it('reads a failed Response', async () => {
    const error = await apiErrorOf(new Response(body, { status: 409, headers: { 'content-type': 'application/json' } }));
    expect(error).toMatchObject({ status: 409, code: 'checksum_mismatch', requestId: 'req-1' });
    expect(await apiErrorOf(new Response('nope', { status: 500, statusText: 'Internal Server Error' }))).toMatchObject({ code: 'http_500', message: 'Internal Server Error' });
  });
});
