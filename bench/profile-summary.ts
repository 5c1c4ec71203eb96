/**
 * Summarise a V8 .cpuprofile (from `npm run bench:http -- --profile`) as text: where the CPU
 * time went, by module (npm package or repository file) and by function.
 *
 *   node --import tsx bench/profile-summary.ts bench/results/profiles/CPU.….cpuprofile [--top 25] [--window auto|all|FROM-TO]
 *
 * The profile covers the whole life of the process (start-up, migrations, the load, shutdown);
 * `--window auto` (the default) keeps the longest stretch of seconds in which the HTTP server was
 * busy (Koa on the stack in at least a quarter of the busy samples), that is the load. FROM-TO
 * picks seconds after the profile started by hand; a per-second timeline is printed to help.
 *
 * "self" is time with the function itself on top of the stack; "inclusive" is time with the
 * module anywhere on the stack (so inclusive figures overlap and do not add up).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT, fmt, table } from './lib.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** `koa`, `@koa/router`, `core/src/http/app.ts`, `node:internal/…`, or `(program)` style names. */
function moduleOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  let file = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
  const nm = file.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = file.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (file.startsWith('node:')) {
    const parts = file.split('/');
    return parts.slice(0, Math.min(parts.length, 3)).join('/');
  }
  if (file.startsWith(REPO_ROOT)) file = path.relative(REPO_ROOT, file);
  return file;
}

function main(): void {
  const { values, positionals } = parseArgs({
    options: { top: { type: 'string', default: '25' }, window: { type: 'string', default: 'auto' } },
    allowPositionals: true,
  });
  if (positionals.length !== 1) {
    process.stderr.write('usage: node --import tsx bench/profile-summary.ts <file.cpuprofile> [--top n] [--window auto|all|FROM-TO]\n');
    process.exit(2);
  }
  const top = Number(values.top);
  const profile = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

  // Which nodes have Koa on their stack (the HTTP server at work).
  const koaNodes = new Set<number>();
  for (const node of profile.nodes) {
    for (let at: number | undefined = node.id; at !== undefined; at = parent.get(at)) {
      if (moduleOf(byId.get(at)!.callFrame.url, '') === 'koa') {
        koaNodes.add(node.id);
        break;
      }
    }
  }

  // Per-second timeline: busy share and Koa share of the busy samples.
  const seconds: { busy: number; total: number; koa: number }[] = [];
  const sampleSecond: number[] = [];
  let clock = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    clock += delta;
    const second = Math.floor(clock / 1e6);
    sampleSecond.push(second);
    const bucket = (seconds[second] ??= { busy: 0, total: 0, koa: 0 });
    bucket.total += delta;
    const node = byId.get(profile.samples[i]!)!;
    if (node.callFrame.functionName !== '(idle)') bucket.busy += delta;
    if (koaNodes.has(node.id)) bucket.koa += delta;
  }
  process.stdout.write('timeline (s: busy% / koa share of busy%):\n');
  process.stdout.write(
    `${seconds.map((b, s) => `${s}: ${b ? fmt((b.busy / Math.max(b.total, 1)) * 100) : 0}/${b ? fmt((b.koa / Math.max(b.busy, 1)) * 100) : 0}`).join('  ')}\n\n`,
  );

  let from = 0;
  let to = seconds.length;
  if (values.window === 'auto') {
    let best: [number, number] = [0, 0];
    let startRun = -1;
    for (let s = 0; s <= seconds.length; s++) {
      const b = seconds[s];
      const loaded = b !== undefined && b.busy > 0 && b.koa / b.busy >= 0.25;
      if (loaded && startRun < 0) startRun = s;
      if (!loaded && startRun >= 0) {
        if (s - startRun > best[1] - best[0]) best = [startRun, s];
        startRun = -1;
      }
    }
    if (best[1] > best[0]) [from, to] = best;
  } else if (values.window !== 'all') {
    const m = /^(\d+)-(\d+)$/.exec(values.window!);
    if (!m) throw new Error('--window must be auto, all or FROM-TO (seconds)');
    [from, to] = [Number(m[1]), Number(m[2])];
  }
  process.stdout.write(`window: seconds ${from}–${to} of the profile\n`);

  const self = new Map<number, number>();
  let counted = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    if (sampleSecond[i]! < from || sampleSecond[i]! >= to) continue;
    counted++;
    const id = profile.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idle = [...self].filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)').reduce((a, [, t]) => a + t, 0);
  const busy = total - idle;

  const selfByModule = new Map<string, number>();
  const selfByFunction = new Map<string, number>();
  const inclusiveByModule = new Map<string, number>();
  for (const [id, time] of self) {
    const node = byId.get(id)!;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') continue;
    const mod = moduleOf(url, functionName);
    selfByModule.set(mod, (selfByModule.get(mod) ?? 0) + time);
    const fn = `${functionName || '(anonymous)'} ${mod}${url ? `:${lineNumber + 1}` : ''}`;
    selfByFunction.set(fn, (selfByFunction.get(fn) ?? 0) + time);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      seen.add(moduleOf(frame.url, frame.functionName));
    }
    for (const m of seen) inclusiveByModule.set(m, (inclusiveByModule.get(m) ?? 0) + time);
  }

  const pct = (t: number) => `${fmt((t / busy) * 100, 1)}%`;
  const ms = (t: number) => fmt(t / 1000);
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top);
  process.stdout.write(`profile: ${fmt(total / 1e6, 2)} s sampled, ${fmt(busy / 1e6, 2)} s busy (${fmt((busy / total) * 100)}%), ${counted} samples\n\n`);
  process.stdout.write(`${table([['self time by module', 'ms', 'busy'], ...sorted(selfByModule).map(([k, t]) => [k, ms(t), pct(t)])])}\n\n`);
  process.stdout.write(
    `${table([['inclusive time by module (on the stack)', 'ms', 'busy'], ...sorted(inclusiveByModule).map(([k, t]) => [k, ms(t), pct(t)])])}\n\n`,
  );
  process.stdout.write(`${table([['self time by function', 'ms', 'busy'], ...sorted(selfByFunction).map(([k, t]) => [k, ms(t), pct(t)])])}\n`);
}

main();
