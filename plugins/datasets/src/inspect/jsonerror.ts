/**
 * Where a JSON text goes wrong. V8's JSON.parse names the position for some errors ("… in JSON at
 * position 12") and only quotes a snippet for others ("Unexpected token '}', …"output": }" is not
 * valid JSON"), which says little on a 2 MB line. This small checker finds the offset itself; it
 * runs only for lines that JSON.parse has already refused.
 */

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const ESCAPES = '"\\/bfnrt';
const HEX4 = /^[0-9a-fA-F]{4}$/;

/** The index of the first character that makes `text` invalid JSON, or -1 when it is valid. */
export function jsonErrorPosition(text: string): number {
  const n = text.length;
  let i = 0;
  const stack: ('[' | '{')[] = [];
  const skipSpace = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      i++;
    }
  };
  // Reads a string at i (which holds `"`); false with i at the fault.
  const readString = (): boolean => {
    i++;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return true;
      }
      if (c < 0x20) return false;
      if (c === 0x5c) {
        const next = text[i + 1];
        if (next !== undefined && ESCAPES.includes(next)) i += 2;
        else if (next === 'u' && HEX4.test(text.slice(i + 2, i + 6))) i += 6;
        else return false;
      } else i++;
    }
    return false;
  };
  // After `{` or `,` in an object: a key and its colon.
  const readKey = (): boolean => {
    if (text[i] !== '"' || !readString()) return false;
    skipSpace();
    if (text[i] !== ':') return false;
    i++;
    return true;
  };

  let expectValue = true;
  skipSpace();
  for (;;) {
    if (expectValue) {
      skipSpace();
      const c = text[i];
      if (c === '{' || c === '[') {
        i++;
        skipSpace();
        if (text[i] === (c === '{' ? '}' : ']')) {
          i++;
          expectValue = false;
          continue;
        }
        stack.push(c);
        if (c === '{') {
          if (!readKey()) return i;
        }
        continue;
      }
      if (c === '"') {
        if (!readString()) return i;
      } else if (text.startsWith('true', i) || text.startsWith('null', i)) i += 4;
      else if (text.startsWith('false', i)) i += 5;
      else {
        NUMBER.lastIndex = i;
        if (!NUMBER.test(text)) return i;
        i = NUMBER.lastIndex;
      }
      expectValue = false;
      continue;
    }
    skipSpace();
    const top = stack[stack.length - 1];
    if (top === undefined) return i < n ? i : -1;
    const c = text[i];
    if (c === ',') {
      i++;
      skipSpace();
      if (top === '{' && !readKey()) return i;
      expectValue = true;
    } else if (c === (top === '{' ? '}' : ']')) {
      i++;
      stack.pop();
    } else return i;
  }
}
