// The saved-session format (src/engine/session.ts) without a GPU: bytes round-trip exactly, and anything else is a
// SessionError that says what to do.
import { describe, expect, it } from 'vitest';
import { decodeSession, encodeSession, SESSION_FORMAT } from '../../src/engine/session.ts';
import { SessionError } from '../../src/errors.ts';

const header = { model: 'a'.repeat(64), messages: [{ role: 'user', content: 'héllo' }, { role: 'assistant', content: 'hi' }], ids: [1, 2, 3] };
const arrays = [Float32Array.from([1.5, -2, NaN]), new Float32Array(0), Float32Array.from({ length: 37 }, (_, i) => i / 7)];

describe('saved sessions', () => {
  it('round-trip header and arrays bit for bit (odd header lengths, empty arrays)', async () => {
    for (const extra of ['', 'x', 'xy', 'xyz']) {
      const h = { ...header, model: header.model + extra };
      const { header: got, arrays: back } = await decodeSession(encodeSession(h, arrays));
      expect(got).toEqual({ format: SESSION_FORMAT, ...h, lengths: [3, 0, 37] });
      expect(back.map((a) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length)))).toEqual(arrays.map((a) => Array.from(new Uint32Array(a.buffer))));
    }
  });

  it('refuses what is not a session of this format', async () => {
    const good = encodeSession(header, arrays);
    const bytes = new Uint8Array(await good.arrayBuffer());
    const json = new TextDecoder().decode(bytes.subarray(8, 8 + new Uint32Array(bytes.buffer, 4, 1)[0]));
    const reformat = (format: number) => new Blob([bytes.subarray(0, 8), new TextEncoder().encode(json.replace(`"format":${SESSION_FORMAT}`, `"format":${format}`)), bytes.subarray(8 + json.length)]);
    const cases: [string, Blob, RegExp][] = [
      ['empty', new Blob([]), /too short/],
      ['other bytes', new Blob([new Uint8Array(100).fill(7)]), /no Q3NS mark/],
      ['truncated', good.slice(0, good.size - 1), /truncated state/],
      ['trailing', new Blob([good, new Uint8Array(4)]), /trailing bytes/],
      ['another format', reformat(SESSION_FORMAT + 1), /format 2.*reads format 1/],
    ];
    for (const [what, blob, message] of cases) {
      const err = await decodeSession(blob).catch((e) => e);
      expect(err, what).toBeInstanceOf(SessionError);
      expect(err.message, what).toMatch(message);
    }
  });
});
