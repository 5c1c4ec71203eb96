// The multiplexed log format and the line assembly, byte by byte (no engine needed).
import { describe, expect, it } from 'vitest';
import { Demuxer, LineAssembler, MAX_PARTIAL_LINE_BYTES, utf8Boundary } from '../src/output.js';

function frame(stream: 1 | 2, text: string | Buffer): Buffer {
  const payload = Buffer.isBuffer(text) ? text : Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

function collect(skip = 0) {
  const out: [string, number][] = [];
  const lines = new LineAssembler(skip, (text, end) => out.push([text, end]));
  return { out, lines, demux: new Demuxer((p) => lines.take(p)) };
}

describe('reading the engine log', () => {
  it('demultiplexes frames split anywhere, and delivers complete lines with their end offsets', () => {
    const wire = Buffer.concat([frame(1, 'one\ntw'), frame(2, 'o\nthree'), frame(1, '\n'), frame(2, 'rest')]);
    for (let size = 1; size <= wire.length; size++) {
      const { out, lines, demux } = collect();
      for (let i = 0; i < wire.length; i += size) demux.push(wire.subarray(i, i + size));
      lines.flush(true);
      expect(out.map(([t]) => t).join('')).toBe('one\ntwo\nthree\nrest');
      expect(out.at(-1)![1]).toBe(18);
      for (const [text] of out.slice(0, -1)) expect(text.endsWith('\n')).toBe(true);
    }
  });

  it('skips what was stored before, and takes nothing twice when the log is read again from its start', () => {
    const { out, lines, demux } = collect(4);
    demux.push(Buffer.concat([frame(1, 'one\ntwo\n'), frame(2, 'thr')]));
    expect(out).toEqual([['two\n', 8]]);
    lines.restart();
    demux.push(Buffer.concat([frame(1, 'one\ntwo\n'), frame(2, 'three\n')]));
    expect(out).toEqual([
      ['two\n', 8],
      ['three\n', 14],
    ]);
  });

  it('delivers a very long line in pieces without cutting a character', () => {
    const { out, demux } = collect();
    const long = Buffer.from('é'.repeat(MAX_PARTIAL_LINE_BYTES));
    demux.push(frame(1, long.subarray(0, MAX_PARTIAL_LINE_BYTES + 1)));
    expect(out).toHaveLength(1);
    expect(out[0]![0]).toBe('é'.repeat(MAX_PARTIAL_LINE_BYTES / 2));
    expect(utf8Boundary(Buffer.from([0x61, 0xc3]))).toBe(1);
    expect(utf8Boundary(Buffer.from('aé'))).toBe(3);
  });
});
