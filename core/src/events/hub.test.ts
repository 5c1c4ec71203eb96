import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { EventGap, StreamEvent } from '@aiplat/plugin-sdk';
import { EventHub } from './hub.js';
import type { BusEvent } from './event.js';
import { MemoryTransport, type Retention } from './transport.js';

const logger = pino({ level: 'silent' });
const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

function memoryHub(retention: Partial<Retention> = {}): EventHub {
  return new EventHub(new MemoryTransport({ perTopic: 10_000, maxBytes: 64 * 1024 * 1024, idleSeconds: 3600, ...retention }), logger);
}

/** Subscribe at hub level and collect what arrives. */
function collect(hub: EventHub, topic: string, since?: number) {
  const out = { start: undefined as number | undefined, events: [] as BusEvent[], gaps: [] as EventGap[] };
  const subscription = hub.subscribe(
    topic,
    { onStart: (latest) => (out.start = latest), onEvent: (e) => out.events.push(e), onGap: (g) => out.gaps.push(g) },
    { since },
  );
  return { ...out, out, subscription, seqs: () => out.events.map((e) => e.seq) };
}

describe('the event hub (in process)', () => {
  it('numbers each topic\'s events from 1, increasing by one, and delivers them in order', async () => {
    const hub = memoryHub();
    const bus = hub.coreBus();
    const a = collect(hub, 'alpha');
    await tick();
    const seqs = await Promise.all([1, 2, 3].map((n) => bus.publish('alpha', { n })));
    expect(seqs).toEqual([1, 2, 3]);
    expect(await bus.publish('beta', {})).toBe(1);
    expect(await bus.publish('alpha', {})).toBe(4);
    expect(a.seqs()).toEqual([1, 2, 3, 4]);
    expect(a.out.events[0]!.toStreamEvent()).toMatchObject({ topic: 'alpha', seq: 1, payload: { n: 1 } });
    expect(a.out.events[0]!.at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    await hub.close();
  });

  it('replays from a cursor, then goes on live without a duplicate or a hole', async () => {
    const hub = memoryHub();
    const bus = hub.coreBus();
    for (let i = 1; i <= 20; i++) await bus.publish('t', { i });
    const late = collect(hub, 't', 15);
    // published while the replay is being set up
    void bus.publish('t', { i: 21 });
    await tick();
    void bus.publish('t', { i: 22 });
    expect(late.out.start).toBe(21);
    expect(late.seqs()).toEqual([16, 17, 18, 19, 20, 21, 22]);
    expect(late.out.gaps).toEqual([]);
    await hub.close();
  });

  it('starts a subscription without a cursor at the next event, even one published in the same tick', async () => {
    const hub = memoryHub();
    const bus = hub.coreBus();
    await bus.publish('t', {});
    const s = collect(hub, 't');
    void bus.publish('t', {});
    await tick();
    expect(s.out.start).toBe(1);
    expect(s.seqs()).toEqual([2]);
    await hub.close();
  });

  it('keeps the last N events per topic and reports older cursors as a gap, explicitly', async () => {
    const hub = memoryHub({ perTopic: 10 });
    const bus = hub.coreBus();
    for (let i = 1; i <= 25; i++) await bus.publish('t', { i });
    const old = collect(hub, 't', 3);
    await tick();
    expect(old.out.gaps).toEqual([{ kind: 'gap', topic: 't', from: 4, to: 15 }]);
    expect(old.seqs()).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    // within the window: no gap
    const recent = collect(hub, 't', 15);
    await tick();
    expect(recent.out.gaps).toEqual([]);
    expect(recent.seqs()).toHaveLength(10);
    // a cursor ahead of the topic (its numbering restarted)
    const ahead = collect(hub, 't', 900);
    await tick();
    expect(ahead.out.gaps).toEqual([{ kind: 'reset', topic: 't', seq: 25 }]);
    expect(ahead.seqs()).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    await hub.close();
  });

  it('bounds the bytes kept across topics, trimming the topic published longest ago first', async () => {
    const transport = new MemoryTransport({ perTopic: 10_000, maxBytes: 50_000, idleSeconds: 3600 });
    const hub = new EventHub(transport, logger);
    const bus = hub.coreBus();
    const pad = 'x'.repeat(1000);
    for (let i = 0; i < 30; i++) await bus.publish('old', { pad });
    for (let i = 0; i < 30; i++) await bus.publish('new', { pad });
    expect(transport.retainedBytes).toBeLessThanOrEqual(50_000);
    const oldKept = await transport.read('old', 0, 100);
    const newKept = await transport.read('new', 0, 100);
    expect(newKept.events.length).toBeGreaterThan(oldKept.events.length);
    expect(oldKept.latest).toBe(30); // the numbering survives trimming: an old cursor is a gap, not a reset
    const s = collect(hub, 'old', 0);
    await tick();
    expect(s.out.gaps[0]).toMatchObject({ kind: 'gap', from: 1 });
    await hub.close();
  });

  it('pauses a replay while the subscriber has no capacity', async () => {
    const hub = memoryHub();
    const bus = hub.coreBus();
    for (let i = 1; i <= 1200; i++) await bus.publish('t', { i });
    const got: number[] = [];
    let open = true;
    let release: () => void = () => undefined;
    hub.subscribe(
      't',
      {
        onEvent: (e) => {
          got.push(e.seq);
          if (got.length === 100) open = false;
        },
        hasCapacity: () => open,
        waitCapacity: () => new Promise<void>((resolve) => (release = resolve)),
      },
      { since: 0 },
    );
    await tick();
    expect(got).toHaveLength(100);
    void bus.publish('t', { live: true }); // held while paused
    open = true;
    release();
    await tick();
    expect(got).toEqual(Array.from({ length: 1201 }, (_, i) => i + 1));
    await hub.close();
  });

  it('keeps the order when a handler publishes to the same topic', async () => {
    const hub = memoryHub();
    const bus = hub.coreBus();
    const first: number[] = [];
    const second: number[] = [];
    bus.subscribe('t', (e) => {
      first.push(e.seq);
      if (e.seq === 1) void bus.publish('t', { echo: true });
    });
    bus.subscribe('t', (e) => second.push(e.seq));
    await tick();
    await bus.publish('t', {});
    await tick();
    expect(first).toEqual([1, 2]);
    expect(second).toEqual([1, 2]);
    await hub.close();
  });

  it('lets a plugin publish only to its own topics, with a clear error, and subscribe to any', async () => {
    const hub = memoryHub();
    const bus = hub.bus('training');
    expect(await bus.publish('training.runs', {})).toBe(1);
    expect(await bus.publish('training.runs/42/logs', { line: 'x' })).toBe(1);
    expect(() => bus.publish('datasets.imports', {})).toThrow(
      'plugin training may publish only to its own topics "training.<name>" (optionally with /sub-topics), not to "datasets.imports"',
    );
    expect(() => bus.publish('plugins', {})).toThrow('not to "plugins"');
    expect(() => bus.publish('training', {})).toThrow('not to "training"');
    expect(() => bus.publish('training-x.runs', {})).toThrow('not to "training-x.runs"');
    expect(() => bus.publish('Training.Runs', {})).toThrow('does not match');
    expect(() => bus.publish('training.runs', { big: 'x'.repeat(70_000) })).toThrow('more than 65536');
    expect(() => bus.publish('training.runs', { n: 1n })).toThrow('the payload is not JSON');
    expect(() => bus.publish('training.runs', {}, { teams: ['x'] } as never)).toThrow('unknown event audience field "teams"');
    expect(() => bus.subscribe('no such topic!', () => undefined)).toThrow('cannot subscribe');
    // A plugin that calls itself "core" is still a plugin: only the core's own bus publishes anywhere.
    expect(() => hub.bus('core').publish('plugins', {})).toThrow('plugin core may publish only to its own topics');
    expect(await hub.coreBus().publish('plugins', {})).toBe(1);
    const got: StreamEvent[] = [];
    bus.subscribe('datasets.imports', (e) => got.push(e));
    await tick();
    await hub.bus('datasets').publish('datasets.imports', { ok: true }, { user: 'u1' });
    expect(got).toEqual([{ topic: 'datasets.imports', seq: 1, at: expect.any(String), payload: { ok: true } }]);
    await hub.close();
  });

  it('gives each in-process subscriber its own payload copy and survives a throwing handler', async () => {
    const hub = memoryHub();
    const bus = hub.coreBus();
    const seen: unknown[] = [];
    bus.subscribe('t', (e: StreamEvent<{ n: number }>) => {
      e.payload.n = 99;
      throw new Error('handler bug');
    });
    bus.subscribe('t', (e) => seen.push(e.payload));
    await tick();
    await bus.publish('t', { n: 1 });
    expect(seen).toEqual([{ n: 1 }]);
    await hub.close();
  });

  it('ends a plugin\'s subscriptions when it stops, and those of its earlier run when it starts again', async () => {
    const hub = memoryHub();
    const core = hub.coreBus();
    const got: string[] = [];
    const run1 = hub.bus('watcher');
    run1.subscribe('t', () => got.push('run1'));
    await tick();
    await core.publish('t', {});
    const run2 = hub.bus('watcher'); // started again
    run2.subscribe('t', () => got.push('run2'));
    await tick();
    await core.publish('t', {});
    hub.release('watcher'); // stopped
    await core.publish('t', {});
    run2.subscribe('t', () => got.push('late'));
    await core.publish('t', {});
    expect(got).toEqual(['run1', 'run2']);
    expect(hub.topicCount).toBe(0);
    await hub.close();
  });

  it('tells a plugin subscriber about gaps through onGap', async () => {
    const hub = memoryHub({ perTopic: 5 });
    const bus = hub.coreBus();
    for (let i = 0; i < 12; i++) await bus.publish('t', {});
    const gaps: EventGap[] = [];
    const seqs: number[] = [];
    bus.subscribe('t', (e) => seqs.push(e.seq), { since: 2, onGap: (g) => gaps.push(g) });
    await tick();
    expect(gaps).toEqual([{ kind: 'gap', topic: 't', from: 3, to: 7 }]);
    expect(seqs).toEqual([8, 9, 10, 11, 12]);
    await hub.close();
  });
});
