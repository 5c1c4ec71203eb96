import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCore, type TestCore } from '@aiplat/testing';

describe('examples/hello with hello-shout', () => {
  let core: TestCore;
  beforeAll(async () => {
    core = await startTestCore({ plugins: ['examples'] });
  });
  afterAll(() => core?.stop());

  it('greets, upper-cased while hello-shout is enabled', async () => {
    expect((await core.client.get('/api/plugins/hello/greeting?name=Ada')).body).toEqual({ greeting: 'HELLO, ADA' });
    expect((await core.client.get(`/api/plugins/hello/greeting?name=${encodeURIComponent('李雷')}`)).body).toEqual({ greeting: 'HELLO, 李雷' });
  });

  it('counts greetings per name in its own table', async () => {
    expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Ada' })).body).toEqual({ greeting: 'HELLO, ADA', count: 1 });
    expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Ada' })).body).toEqual({ greeting: 'HELLO, ADA', count: 2 });
    expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Bob' })).body.count).toBe(1);
    const rows = await core.core.database.knex('p_hello_counters').orderBy('name').select('name', 'count');
    expect(rows).toEqual([
      { name: 'Ada', count: 2 },
      { name: 'Bob', count: 1 },
    ]);
  });

  it('accepts exactly 64 characters and refuses 65', async () => {
    expect((await core.client.get(`/api/plugins/hello/greeting?name=${'x'.repeat(64)}`)).status).toBe(200);
    const res = await core.client.post('/api/plugins/hello/greetings', { name: 'x'.repeat(65) });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toBe('Invalid request body: name: must be at most 64 characters long');
  });
});

describe('examples/hello: the greetings list, stats and event', () => {
  let core: TestCore;
  const list = (query: string) => core.client.get(`/api/plugins/hello/greetings${query}`);

  /**
   * 23 rows with ties on count and on updated_at, some updated_at values apart by one microsecond
   * (a JavaScript Date cannot tell them apart: the cursor must).
   */
  const seeded = Array.from({ length: 23 }, (_, i) => ({
    name: `pg${String.fromCharCode(97 + ((i * 7) % 23))}${String.fromCharCode(97 + (i % 3))}`,
    count: (i % 4) + 1,
    updatedAt: `2020-01-0${(i % 3) + 1}T10:00:00.00000${i % 2}Z`,
  }));

  const expectedOrder = (sort: string): string[] => {
    const descending = sort.startsWith('-');
    const field = (descending ? sort.slice(1) : sort) as 'name' | 'count' | 'updatedAt';
    const cmp = (a: (typeof seeded)[number], b: (typeof seeded)[number]) => {
      const ka = a[field];
      const kb = b[field];
      const byKey = ka < kb ? -1 : ka > kb ? 1 : 0;
      return byKey !== 0 ? byKey : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    };
    const sorted = [...seeded].sort(cmp);
    return (descending ? sorted.reverse() : sorted).map((r) => r.name);
  };

  /** Every page of a listing, following nextCursor. */
  async function allPages(query: string, from: string | null = null): Promise<{ names: string[]; pages: number }> {
    const names: string[] = [];
    let cursor = from;
    let pages = 0;
    do {
      const res = await list(`${query}${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      names.push(...res.body.items.map((i: { name: string }) => i.name));
      cursor = res.body.nextCursor;
      pages++;
      expect(pages).toBeLessThan(50);
    } while (cursor);
    return { names, pages };
  }

  beforeAll(async () => {
    core = await startTestCore({ plugins: ['examples/hello'] });
    await core.core.database.knex('p_hello_counters').insert(
      seeded.map((r) => ({ name: r.name, count: r.count, last_greeting: `Hello, ${r.name}`, updated_at: r.updatedAt })),
    );
  });
  afterAll(() => core?.stop());

  it('lists names newest first by default, 20 to a page, in the list convention', async () => {
    const res = await list('');
    expect(res.status).toBe(200);
    expect(res.body.items).toHaveLength(20);
    expect(res.body.items[0]).toEqual({ name: expectedOrder('-updatedAt')[0], count: expect.any(Number), lastGreeting: expect.stringMatching(/^Hello, pg/), updatedAt: expect.stringMatching(/^2020-01-03T10:00:00\.000Z$/) });
    expect(res.body.items.map((i: { name: string }) => i.name)).toEqual(expectedOrder('-updatedAt').slice(0, 20));
    expect(res.body.nextCursor).toMatch(/^[A-Za-z0-9_-]+$/);
    const rest = await list(`?cursor=${res.body.nextCursor}`);
    expect(rest.body.items.map((i: { name: string }) => i.name)).toEqual(expectedOrder('-updatedAt').slice(20));
    expect(rest.body.nextCursor).toBeNull();
  });

  it.each(['name', '-name', 'count', '-count', 'updatedAt', '-updatedAt'])('pages through sort=%s without duplicates or gaps', async (sort) => {
    const { names, pages } = await allPages(`?q=pg&limit=4&sort=${sort}`);
    expect(pages).toBe(6);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual(expectedOrder(sort));
  });

  it('keeps its place when a row is greeted between two pages', async () => {
    const first = await list('?q=pg&limit=5&sort=updatedAt');
    expect(first.status).toBe(200);
    const seen: string[] = first.body.items.map((i: { name: string }) => i.name);
    // A name on the first page is greeted now: it moves to the end, and the next page starts where the first ended.
    expect((await core.client.post('/api/plugins/hello/greetings', { name: seen[0] })).status).toBe(200);
    const { names } = await allPages('?q=pg&limit=5&sort=updatedAt', first.body.nextCursor);
    expect(names).toEqual([...expectedOrder('updatedAt').filter((n) => !seen.includes(n)), seen[0]]);
    const original = seeded.find((r) => r.name === seen[0])!;
    await core.core.database.knex('p_hello_counters').where({ name: original.name }).update({ count: original.count, updated_at: original.updatedAt });
  });

  it('filters by a substring of the name, case-insensitively, with % and _ taken literally', async () => {
    await core.client.post('/api/plugins/hello/greetings', { name: 'Ada_Lovelace' });
    await core.client.post('/api/plugins/hello/greetings', { name: 'Ada 100%' });
    await core.client.post('/api/plugins/hello/greetings', { name: '李雷' });
    const names = async (q: string) => (await list(`?q=${encodeURIComponent(q)}&sort=name`)).body.items.map((i: { name: string }) => i.name);
    expect(await names('ada')).toEqual(['Ada 100%', 'Ada_Lovelace']);
    expect(await names('_')).toEqual(['Ada_Lovelace']);
    expect(await names('%')).toEqual(['Ada 100%']);
    expect(await names('李')).toEqual(['李雷']);
    expect(await names('nobody')).toEqual([]);
    expect((await list('?q=pgaa')).body).toEqual({ items: [expect.objectContaining({ name: 'pgaa', lastGreeting: 'Hello, pgaa' })], nextCursor: null });
  });

  it('refuses a bad query with 400 and a message naming the parameter', async () => {
    const refused = async (query: string) => {
      const res = await list(query);
      expect(res.status).toBe(400);
      return res.body.error as { code: string; message: string };
    };
    expect(await refused('?limit=0')).toMatchObject({ code: 'validation_failed', message: 'Invalid query: limit: must be >= 1' });
    expect(await refused('?limit=101')).toMatchObject({ code: 'validation_failed', message: 'Invalid query: limit: must be <= 100' });
    expect(await refused('?limit=ten')).toMatchObject({ code: 'validation_failed', message: 'Invalid query: limit: must be integer' });
    expect((await refused('?sort=age')).message).toBe('Invalid query: sort: must be one of "name", "-name", "count", "-count", "updatedAt", "-updatedAt"');
    expect((await refused(`?q=${'x'.repeat(65)}`)).message).toBe('Invalid query: q: must be at most 64 characters long');
    expect((await refused('?order=name')).message).toBe('Invalid query: order: unknown field "order"');
    expect(await refused('?cursor=not-a-cursor')).toMatchObject({ code: 'bad_request', message: 'The cursor is not valid: pass the nextCursor of an earlier page' });
    const byName = await list('?limit=2&sort=name');
    expect((await refused(`?sort=count&cursor=${byName.body.nextCursor}`)).message).toBe('The cursor was made for sort "name", not "count": start again without a cursor');
  });

  it('counts distinct names and all greetings', async () => {
    const rows = (await core.core.database.knex('p_hello_counters').select('count')) as { count: number }[];
    const res = await core.client.get('/api/plugins/hello/stats');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ names: rows.length, greetings: rows.reduce((sum, r) => sum + r.count, 0) });
    await core.client.post('/api/plugins/hello/greetings', { name: 'Stats' });
    await core.client.post('/api/plugins/hello/greetings', { name: 'Stats' });
    expect((await core.client.get('/api/plugins/hello/stats')).body).toEqual({ names: res.body.names + 1, greetings: res.body.greetings + 2 });
  });

  it('publishes hello.greetings after each recorded greeting commits', async () => {
    const received: { payload: unknown; stored: number | undefined }[] = [];
    const subscription = core.core.events.subscribe<{ name: string; count: number }>('hello.greetings', (event) => {
      // The handler runs after the commit: a fresh connection already sees the new count.
      void core.core.database.knex('p_hello_counters').where({ name: event.payload.name }).first().then((row: { count: number } | undefined) => {
        received.push({ payload: event.payload, stored: row?.count });
      });
    });
    try {
      expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Eve' })).body).toEqual({ greeting: 'Hello, Eve', count: 1 });
      expect((await core.client.post('/api/plugins/hello/greetings', { name: 'Eve' })).body.count).toBe(2);
      // Refused requests change nothing and publish nothing.
      expect((await core.client.post('/api/plugins/hello/greetings', { name: '' })).status).toBe(400);
      await expect.poll(() => received.length).toBe(2);
      expect(received).toEqual([
        { payload: { name: 'Eve', greeting: 'Hello, Eve', count: 1 }, stored: 1 },
        { payload: { name: 'Eve', greeting: 'Hello, Eve', count: 2 }, stored: 2 },
      ]);
    } finally {
      subscription.unsubscribe();
    }
  });

  it('needs greetings:read for the list and the stats', async () => {
    expect((await core.client.anonymous().get('/api/plugins/hello/greetings')).status).toBe(401);
    expect((await core.client.anonymous().get('/api/plugins/hello/stats')).status).toBe(401);
  });
});
