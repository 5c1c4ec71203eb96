/**
 * The datasets plugin's file inspection on real files: CSV, JSONL and text written here, images
 * and Parquet files committed under fixtures/ with the scripts that wrote them (Pillow, pyarrow).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatasetInspectError, fileKind, previewFile, validateFile, type Preview } from '../src/inspect/index.js';
import { jsonErrorPosition } from '../src/inspect/jsonerror.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'aiplat-inspect-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function write(name: string, content: string | Buffer): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, content);
  return file;
}

function table(preview: Preview) {
  if (preview.kind !== 'jsonl' && preview.kind !== 'csv' && preview.kind !== 'parquet') throw new Error(`not a table: ${preview.kind}`);
  return preview;
}

const jsonl = (records: unknown[]) => records.map((record) => JSON.stringify(record)).join('\n') + '\n';

describe('fileKind', () => {
  it('tells the kind by extension, case aside', () => {
    expect(fileKind('a/train.jsonl')).toBe('jsonl');
    expect(fileKind('x.NDJSON')).toBe('jsonl');
    expect(fileKind('meta.json')).toBe('json');
    expect(fileKind('t.csv')).toBe('csv');
    expect(fileKind('t.tsv')).toBe('csv');
    expect(fileKind('p/q.parquet')).toBe('parquet');
    for (const name of ['a.txt', 'README.md', 'b.text', 'run.log']) expect(fileKind(name)).toBe('text');
    for (const name of ['a.png', 'a.JPG', 'a.jpeg', 'a.gif', 'a.webp', 'a.bmp']) expect(fileKind(name)).toBe('image');
    for (const name of ['model.bin', 'Makefile', '.gitignore', 'dir.v2/file', 'a.tar.gz']) expect(fileKind(name)).toBe('other');
  });
});

describe('jsonErrorPosition', () => {
  it('agrees with V8 where V8 names a position, and finds one where it does not', () => {
    const bad = ['{"a":1,}', '{oops', '[1,2', '{"a":1} x', '"abc', '{"a" 1}', '[01]', '{"a":"b\u0001"}', '{,}', '[1 2]', '{"a":1 "b":2}'];
    for (const text of bad) {
      const message = (() => {
        try {
          JSON.parse(text);
        } catch (error) {
          return (error as Error).message;
        }
        throw new Error(`${text} parsed`);
      })();
      expect(jsonErrorPosition(text), text).toBe(Number(/position (\d+)/.exec(message)![1]));
    }
    expect(jsonErrorPosition('{"a": }')).toBe(6);
    expect(jsonErrorPosition('[1,]')).toBe(3);
    expect(jsonErrorPosition('')).toBe(0);
    for (const text of ['{}', '[[[]]]', ' {"a":[1,2.5e-3,-0,true,false,null,"x\\u00e9\\n"],"b":{"c":{}}} ', '"s"', '12']) {
      expect(jsonErrorPosition(text), text).toBe(-1);
    }
  });
});

describe('JSONL preview', () => {
  it('parses the first rows, infers columns and counts every non-blank line', async () => {
    const records = Array.from({ length: 50 }, (_, i) => ({ id: i, text: `t${i}`, score: i % 2 ? 0.5 : 1, ok: i % 3 === 0, tags: ['a'], meta: i === 1 ? null : { k: i } }));
    const file = await write('rows.jsonl', jsonl(records).replace('\n', '\n\n  \n')); // blank lines after line 1
    const preview = table(await previewFile(file, { path: 'data/rows.jsonl', limit: 5 }));
    expect(preview.kind).toBe('jsonl');
    expect(preview.path).toBe('data/rows.jsonl');
    expect(preview.rows).toHaveLength(5);
    expect(preview.rows[0]).toEqual(records[0]);
    expect(preview.rowCount).toBe(50);
    expect(preview.rowCountExact).toBe(true);
    expect(preview.errors).toEqual([]);
    expect(preview.columns).toEqual([
      { name: 'id', type: 'integer' },
      { name: 'text', type: 'string' },
      { name: 'score', type: 'number' },
      { name: 'ok', type: 'boolean' },
      { name: 'tags', type: 'array' },
      { name: 'meta', type: 'object|null' },
    ]);
  });

  it('keeps going past malformed lines and reports them with their line numbers', async () => {
    const file = await write('bad.jsonl', '{"a":1}\n{"a":2,}\nnot json\n[1,2]\n{"a":"x"}\n{"a":3}\n{oops\n');
    const preview = table(await previewFile(file, { path: 'bad.jsonl', limit: 5 }));
    expect(preview.rows).toEqual([{ a: 1 }, { a: 'x' }]);
    expect(preview.columns).toEqual([{ name: 'a', type: 'integer|string' }]);
    expect(preview.errors.map((error) => error.line)).toEqual([2, 3, 4]);
    expect(preview.errors[0]!.message).toMatch(/^not JSON \(.*position 7/);
    expect(preview.errors[1]!.message).toMatch(/^not JSON \(Unexpected token 'o'.* at position 0\)$/);
    expect(preview.errors[2]!.message).toBe('not a JSON object (array)');
    expect(preview.rowCount).toBe(7); // line 7 is malformed too, but beyond the preview
  });

  it('reads CRLF files and a last line without a newline', async () => {
    const file = await write('crlf.jsonl', '\uFEFF{"a":1}\r\n\r\n{"a":2}\r\n{"a":3}');
    const preview = table(await previewFile(file, { path: 'crlf.jsonl', limit: 10 }));
    expect(preview.rows).toEqual([{ a: 1 }, { a: 2 }, { a: 3 }]);
    expect(preview.errors).toEqual([]);
    expect(preview.rowCount).toBe(3);
  });

  it('reports a line over the cap as an error instead of buffering it', async () => {
    const huge = JSON.stringify({ text: 'x'.repeat(11 * 1024 * 1024) });
    const file = await write('huge.jsonl', `{"a":1}\n${huge}\n{"a":2}\n`);
    const preview = table(await previewFile(file, { path: 'huge.jsonl', limit: 10 }));
    expect(preview.rows).toEqual([{ a: 1 }, { a: 2 }]);
    expect(preview.errors).toEqual([{ line: 2, message: expect.stringMatching(/^line is 11 MB, over the 10 MB a preview reads/) }]);
    expect(preview.rowCount).toBe(3);
  });

  it('counts the rows of a 200 MB file without holding it in memory', async () => {
    const file = join(dir, 'big.jsonl');
    const line = JSON.stringify({ instruction: 'Say something about the number.', input: 'n'.repeat(60), output: 'y'.repeat(100) }) + '\n';
    const perChunk = Math.floor((1024 * 1024) / line.length);
    const chunk = Buffer.from(line.repeat(perChunk));
    const chunks = Math.ceil((200 * 1024 * 1024) / chunk.length);
    const fd = openSync(file, 'w');
    try {
      for (let i = 0; i < chunks; i++) writeSync(fd, chunk);
    } finally {
      closeSync(fd);
    }
    const before = process.memoryUsage.rss();
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 5);
    const started = Date.now();
    try {
      const preview = table(await previewFile(file, { path: 'big.jsonl', limit: 20 }));
      expect(preview.rowCount).toBe(perChunk * chunks);
      expect(preview.rows).toHaveLength(20);
    } finally {
      clearInterval(sampler);
      await rm(file, { force: true });
    }
    peak = Math.max(peak, process.memoryUsage.rss());
    expect(peak - before).toBeLessThan(50 * 1024 * 1024);
    expect(Date.now() - started).toBeLessThan(10_000);
  }, 30_000);
});

describe('CSV preview', () => {
  it('reads the header, rows as objects and types, and counts records (not lines)', async () => {
    const lines = ['id,score,name,flag,empty'];
    for (let i = 0; i < 300; i++) lines.push(`${i},${i / 4},"name ${i}${i === 2 ? ', with comma\nand newline' : ''}",${i % 2 ? 'true' : 'FALSE'},`);
    const file = await write('t.csv', '\uFEFF' + lines.join('\r\n') + '\r\n');
    const preview = table(await previewFile(file, { path: 'x/t.csv', limit: 4 }));
    expect(preview.kind).toBe('csv');
    expect(preview.columns).toEqual([
      { name: 'id', type: 'integer' },
      { name: 'score', type: 'number' },
      { name: 'name', type: 'string' },
      { name: 'flag', type: 'boolean' },
      { name: 'empty', type: 'string' },
    ]);
    expect(preview.rows).toHaveLength(4);
    expect(preview.rows[0]).toEqual({ id: '0', score: '0', name: 'name 0', flag: 'FALSE', empty: '' });
    expect(preview.rows[2]!.name).toBe('name 2, with comma\nand newline');
    expect(preview.rowCount).toBe(300);
    expect(preview.rowCountExact).toBe(true);
    expect(preview.errors).toEqual([]);
  });

  it('reads TSV, with ragged rows and odd headers', async () => {
    const file = await write('t.tsv', 'a\ta\t\n1\t"x\t2.5\n3\ty\n4\tz\t1e3\textra\n');
    const preview = table(await previewFile(file, { path: 't.tsv', limit: 10 }));
    expect(preview.columns.map((column) => column.name)).toEqual(['a', 'a_2', 'column_3', 'column_4']);
    expect(preview.rows[0]).toEqual({ a: '1', a_2: '"x', column_3: '2.5' });
    expect(preview.columns[2]).toEqual({ name: 'column_3', type: 'number' });
    expect(preview.rowCount).toBe(3);
  });

  it('keeps what it read before a broken record and says the count is not exact', async () => {
    const file = await write('broken.csv', 'a,b\n1,2\n3,4\n5,"never closed\n6,7\n');
    const preview = table(await previewFile(file, { path: 'broken.csv', limit: 10 }));
    expect(preview.rows).toEqual([{ a: '1', b: '2' }, { a: '3', b: '4' }]);
    expect(preview.rowCountExact).toBe(false);
    expect(preview.errors).toHaveLength(1);
    expect(preview.errors[0]!.message).toMatch(/quote/i);
    expect(preview.errors[0]!.line).toBeGreaterThanOrEqual(4);
  });

  it('stops at a record over the size cap instead of buffering it', async () => {
    const file = await write('huge.csv', `a,b\n1,2\n3,"${'x'.repeat(11 * 1024 * 1024)}"\n5,6\n`);
    const preview = table(await previewFile(file, { path: 'huge.csv', limit: 10 }));
    expect(preview.rows).toEqual([{ a: '1', b: '2' }]);
    expect(preview.rowCountExact).toBe(false);
    expect(preview.errors).toEqual([{ line: 3, message: 'a record is over 10 MB; reading stopped there' }]);
  });
});

describe('Parquet preview', () => {
  // What pyarrow 26 reported for the fixtures (make_parquet.py writes parquet-expected.json).
  const SMALL = { rows: 300, columns: ['id', 'score', 'name', 'active', 'note'], physical: ['INT64', 'DOUBLE', 'BYTE_ARRAY', 'BOOLEAN', 'BYTE_ARRAY'] };

  it('reads the schema, the exact row count and the first rows as pyarrow wrote them', async () => {
    const expected = JSON.parse(await readFile(join(FIXTURES, 'parquet-expected.json'), 'utf8'))['small.parquet'];
    expect(expected.num_rows).toBe(SMALL.rows);
    expect(expected.parquet_physical_types).toEqual(SMALL.physical);

    const preview = table(await previewFile(join(FIXTURES, 'small.parquet'), { path: 'd/small.parquet', limit: 3 }));
    expect(preview.kind).toBe('parquet');
    expect(preview.rowCount).toBe(expected.num_rows);
    expect(preview.rowCountExact).toBe(true);
    expect(preview.columns.map((column) => column.name)).toEqual(expected.schema.map((field: { name: string }) => field.name));
    expect(preview.columns).toEqual([
      { name: 'id', type: 'INT64' },
      { name: 'score', type: 'DOUBLE' },
      { name: 'name', type: 'BYTE_ARRAY (STRING)' },
      { name: 'active', type: 'BOOLEAN' },
      { name: 'note', type: 'BYTE_ARRAY (STRING)' },
    ]);
    expect(preview.rows).toEqual(expected.first_rows);
    expect(preview.rows[0]!.note).toBeNull();
    expect(preview.errors).toEqual([]);
    expect(JSON.parse(JSON.stringify(preview))).toEqual(preview); // JSON-safe: INT64 came as BigInt
  });

  it('reads rows across row groups', async () => {
    const preview = table(await previewFile(join(FIXTURES, 'small.parquet'), { path: 'small.parquet', limit: 150 }));
    expect(preview.rows).toHaveLength(150);
    expect(preview.rows[149]).toEqual({ id: 149, score: 74.75, name: 'row-149', active: false, note: 'note 149' });
    expect(preview.rows[147]!.note).toBeNull();
  });

  it('decodes ZSTD-compressed pages as pyarrow wrote them', async () => {
    const expected = JSON.parse(await readFile(join(FIXTURES, 'parquet-expected.json'), 'utf8'))['zstd.parquet'];
    const preview = table(await previewFile(join(FIXTURES, 'zstd.parquet'), { path: 'zstd.parquet', limit: 3 }));
    expect(preview.rowCount).toBe(expected.num_rows);
    expect(preview.columns).toHaveLength(5);
    expect(preview.errors).toEqual([]);
    expect(preview.rows).toEqual(expected.first_rows);
  });

  it('refuses a file that is not Parquet', async () => {
    const file = await write('fake.parquet', 'id,name\n1,a\n2,b\n');
    const error = await previewFile(file, { path: 'data/x.parquet', limit: 5 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DatasetInspectError);
    expect((error as Error).message).toMatch(/^data\/x\.parquet is not a Parquet file: /);
    const tiny = await write('tiny.parquet', 'PAR1');
    await expect(previewFile(tiny, { path: 'tiny.parquet', limit: 5 })).rejects.toThrow(/tiny\.parquet is not a Parquet file: it is 4 bytes long/);
  });
});

describe('text, image and other previews', () => {
  it('gives the first lines and the line count', async () => {
    const file = await write('notes.md', '# Title\r\n\r\nbody\n' + 'x'.repeat(100_000) + '\nlast');
    const preview = await previewFile(file, { path: 'notes.md', limit: 4 });
    expect(preview).toMatchObject({ kind: 'text', lineCount: 5, rowCountExact: true });
    if (preview.kind !== 'text') throw new Error('not text');
    expect(preview.lines.slice(0, 3)).toEqual(['# Title', '', 'body']);
    expect(preview.lines[3]!.length).toBe(64 * 1024 + 1); // cut, with an ellipsis
  });

  it('shows a .json file as text', async () => {
    const file = await write('meta.json', '{\n  "a": 1\n}\n');
    expect(await previewFile(file, { path: 'meta.json', limit: 2 })).toEqual({ kind: 'text', path: 'meta.json', lines: ['{', '  "a": 1'], lineCount: 3, rowCountExact: true });
  });

  it('reads image format and size from the header', async () => {
    expect(await previewFile(join(FIXTURES, 'tiny.png'), { path: 'img/a.png', limit: 1 })).toEqual({ kind: 'image', path: 'img/a.png', format: 'png', width: 3, height: 2, contentUrl: '' });
    expect(await previewFile(join(FIXTURES, 'tiny.jpg'), { path: 'b.jpg', limit: 1 })).toMatchObject({ format: 'jpg', width: 5, height: 4 });
    // Stored 8×4 with EXIF orientation 6: shown (and reported) as 4×8.
    expect(await previewFile(join(FIXTURES, 'turned.jpg'), { path: 'c.jpg', limit: 1 })).toMatchObject({ format: 'jpg', width: 4, height: 8 });
  });

  it('refuses a broken image', async () => {
    const png = await readFile(join(FIXTURES, 'tiny.png'));
    const cases = {
      'text.png': Buffer.from('this is not a picture'),
      'empty.png': Buffer.alloc(0),
      'cut.png': png.subarray(0, 12), // the signature, then nothing
    };
    for (const [name, content] of Object.entries(cases)) {
      const file = await write(name, content);
      const error = await previewFile(file, { path: `img/${name}`, limit: 1 }).catch((caught: unknown) => caught);
      expect(error, name).toBeInstanceOf(DatasetInspectError);
      expect((error as Error).message, name).toMatch(new RegExp(`^img/${name.replace('.', '\\.')} is not a`));
    }
  });

  it('describes other files by size', async () => {
    const file = await write('weights.bin', Buffer.alloc(1234));
    expect(await previewFile(file, { path: 'weights.bin', limit: 5 })).toMatchObject({ kind: 'other', path: 'weights.bin', size: 1234, message: expect.any(String) });
  });
});

describe('validateFile', () => {
  it('checks instruction records line by line', async () => {
    const good = { instruction: 'Add', input: '1 2', output: '3', source: 'extra keys are fine' };
    const file = await write('inst.jsonl', [
      JSON.stringify(good), // 1
      JSON.stringify({ instruction: 'No input', output: 'ok' }), // 2
      '', // 3: blank, skipped
      JSON.stringify({ instruction: 'x', output: 5 }), // 4
      '{"instruction": "x", "output": }', // 5
      JSON.stringify({ output: 'y', input: 7 }), // 6
      JSON.stringify(['not', 'an', 'object']), // 7
      JSON.stringify({ instruction: ' ', output: 'z' }), // 8
      JSON.stringify(good), // 9
    ].join('\n'));
    const report = await validateFile(file, { path: 'd/inst.jsonl', format: 'instruction' });
    expect(report).toMatchObject({ path: 'd/inst.jsonl', format: 'instruction', detected: false, lines: 8, valid: 3, invalid: 5, errorsTruncated: false });
    expect(report.errors.map((error) => error.line)).toEqual([4, 5, 6, 7, 8]);
    expect(report.errors[0]!.message).toBe('line 4: "output" must be a string (got integer)');
    expect(report.errors[1]!.message).toMatch(/^line 5: not JSON \(.*position 31/);
    expect(report.errors[2]!.message).toBe('line 6: "instruction" is missing; "input" must be a string (got integer)');
    expect(report.errors[3]!.message).toBe('line 7: must be a JSON object (got array)');
    expect(report.errors[4]!.message).toBe('line 8: "instruction" must not be empty');
  });

  it('checks chat records', async () => {
    const ok = { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }] };
    const file = await write('chat.jsonl', jsonl([
      ok, // 1
      { messages: [{ role: 'user', content: 'Hi' }, { role: 'bot', content: 'Hello' }] }, // 2
      { messages: [{ role: 'user', content: '' }, { role: 'assistant', content: 'x' }] }, // 3
      { messages: [{ role: 'user', content: 'x' }] }, // 4
      { messages: 'hello' }, // 5
      { messages: [{ role: 'user', content: 'weather?' }, { role: 'assistant', content: null, tool_calls: [{ id: '1' }] }, { role: 'tool', content: 'sunny' }, { role: 'assistant', content: 'Sunny.' }] }, // 6
      { messages: [{ role: 'user', content: 1 }, 'x', { content: 'y' }, { role: 'assistant', content: 'z' }] }, // 7
      { prompt: 'x' }, // 8
    ]));
    const report = await validateFile(file, { path: 'chat.jsonl', format: 'chat' });
    expect(report).toMatchObject({ format: 'chat', detected: false, lines: 8, valid: 2, invalid: 6 });
    expect(report.errors).toEqual([
      { line: 2, message: 'line 2: messages[1].role must be one of system, user, assistant, tool (got "bot"); "messages" has no assistant message' },
      { line: 3, message: 'line 3: messages[0].content must not be empty' },
      { line: 4, message: 'line 4: "messages" has no assistant message' },
      { line: 5, message: 'line 5: "messages" must be an array (got string)' },
      { line: 7, message: 'line 7: messages[0].content must be a string (got integer); messages[1] must be an object (got string); messages[2].role is missing' },
      { line: 8, message: 'line 8: "messages" is missing' },
    ]);
  });

  it('detects the format from the first object, and refuses to guess', async () => {
    const chat = await write('auto-chat.jsonl', `\nnot json\n${JSON.stringify({ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] })}\n`);
    expect(await validateFile(chat, { path: 'auto-chat.jsonl', format: 'auto' })).toMatchObject({ format: 'chat', detected: true, lines: 2, valid: 1, invalid: 1 });
    const inst = await write('auto-inst.jsonl', jsonl([{ instruction: 'a', output: 'b' }]));
    expect(await validateFile(inst, { path: 'auto-inst.jsonl', format: 'auto' })).toMatchObject({ format: 'instruction', detected: true, valid: 1 });

    const neither = await write('neither.jsonl', jsonl([{ prompt: 'a', completion: 'b' }, { instruction: 'a', output: 'b' }]));
    await expect(validateFile(neither, { path: 'd/neither.jsonl', format: 'auto' })).rejects.toThrow(
      'd/neither.jsonl: cannot tell its format: the first object (line 1) has neither "messages" (chat) nor "instruction" (instruction); its keys are "prompt", "completion"',
    );
    const garbage = await write('garbage.jsonl', 'nope\n[1]\n');
    const error = await validateFile(garbage, { path: 'garbage.jsonl', format: 'auto' }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DatasetInspectError);
    expect((error as Error).message).toBe('garbage.jsonl: cannot tell its format: it holds no JSON object');
  });

  it('keeps at most maxErrors messages and says so', async () => {
    const file = await write('many.jsonl', 'x\n'.repeat(30));
    const report = await validateFile(file, { path: 'many.jsonl', format: 'instruction', maxErrors: 10 });
    expect(report).toMatchObject({ lines: 30, valid: 0, invalid: 30, errorsTruncated: true });
    expect(report.errors.map((error) => error.line)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('reports a line over the cap without buffering it', async () => {
    const huge = JSON.stringify({ instruction: 'x'.repeat(11 * 1024 * 1024), output: 'y' });
    const file = await write('huge-train.jsonl', `${huge}\n${JSON.stringify({ instruction: 'a', output: 'b' })}\n`);
    const report = await validateFile(file, { path: 'huge-train.jsonl', format: 'instruction' });
    expect(report).toMatchObject({ lines: 2, valid: 1, invalid: 1 });
    expect(report.errors[0]!.message).toMatch(/^line 1: line is 11 MB, over the 10 MB that is checked/);
  });

  it('validates a .json array item by item', async () => {
    const file = await write('alpaca.json', JSON.stringify([{ instruction: 'a', input: '', output: 'b' }, { instruction: 'c' }], null, 2));
    const report = await validateFile(file, { path: 'alpaca.json', format: 'auto' });
    expect(report).toMatchObject({ format: 'instruction', detected: true, lines: 2, valid: 1, invalid: 1 });
    expect(report.errors).toEqual([{ line: 2, message: 'item 2: "output" is missing' }]);
  });

  it('refuses files that are not JSONL or JSON', async () => {
    const file = await write('t.csv', 'a,b\n');
    await expect(validateFile(file, { path: 'd/t.csv', format: 'auto' })).rejects.toBeInstanceOf(DatasetInspectError);
    await expect(validateFile(file, { path: 'd/t.csv', format: 'chat' })).rejects.toThrow(/^d\/t\.csv cannot be validated/);
  });
});
