// A conversation saved to bytes (engine.saveSession) and back (restoreSession): the messages, the token ids the
// GPU state consumed, and that state itself (cache.read(): every GDN layer's conv and recurrent state, and the used
// rows of the attention layers' K/V caches). A hybrid model's state is small: the GDN layers' does not grow with
// the conversation, and only 1 layer in 4 keeps K/V.
//
// Layout: 'Q3NS', u32 header bytes, the header as JSON (padded with spaces to 4 bytes), then the f32 arrays in
// order, their lengths in the header.
import { SessionError } from '../errors.ts';
import { sha256Hex, type Manifest } from '../store/manifest.ts';
import type { ChatMessage } from '../tokenizer/tokenizer.ts';

export const SESSION_FORMAT = 1;
const MAGIC = 0x534e3351; // 'Q3NS' little-endian

export interface SessionHeader {
  format: number;
  /** The model's identity (modelIdentity): a session continues only the model that made it. */
  model: string;
  /** The conversation so far, as the last request sent it plus the reply. */
  messages: ChatMessage[];
  /** Tokens the state consumed (the cache position is ids.length). */
  ids: number[];
  /** Floats of each state array. */
  lengths: number[];
}

/** A model's identity: the SHA-256 of its manifest, which lists every record's own SHA-256. */
export async function modelIdentity(m: Manifest): Promise<string> {
  return sha256Hex(new TextEncoder().encode(JSON.stringify(m)));
}

export function encodeSession(header: Omit<SessionHeader, 'format' | 'lengths'>, arrays: Float32Array[]): Blob {
  const full: SessionHeader = { format: SESSION_FORMAT, ...header, lengths: arrays.map((a) => a.length) };
  let json = JSON.stringify(full);
  json += ' '.repeat((4 - (new TextEncoder().encode(json).length % 4)) % 4);
  const text = new TextEncoder().encode(json);
  const head = new Uint32Array([MAGIC, text.length]);
  return new Blob([head, text, ...arrays.map((a) => a as Float32Array<ArrayBuffer>)]);
}

/** The header and arrays of a saved session; SessionError when the bytes are not one this version reads. */
export async function decodeSession(blob: Blob): Promise<{ header: SessionHeader; arrays: Float32Array<ArrayBuffer>[] }> {
  const bytes = await blob.arrayBuffer();
  const notOne = (why: string) => new SessionError(`these bytes are not a saved session (${why}). Pass what engine.saveSession() returned.`);
  if (bytes.byteLength < 8) throw notOne('too short');
  const [magic, n] = new Uint32Array(bytes, 0, 2);
  if (magic !== MAGIC) throw notOne('no Q3NS mark');
  if (8 + n > bytes.byteLength) throw notOne('truncated header');
  let header: SessionHeader;
  try {
    header = JSON.parse(new TextDecoder().decode(new Uint8Array(bytes, 8, n)));
  } catch {
    throw notOne('unreadable header');
  }
  if (header.format !== SESSION_FORMAT) {
    throw new SessionError(`this session was saved in format ${header.format}; this version of the runtime reads format ${SESSION_FORMAT}. Start a new chat (or restore it with the version that saved it).`);
  }
  const arrays: Float32Array<ArrayBuffer>[] = [];
  let at = 8 + n;
  for (const len of header.lengths) {
    if (at + len * 4 > bytes.byteLength) throw notOne('truncated state');
    arrays.push(new Float32Array(bytes, at, len));
    at += len * 4;
  }
  if (at !== bytes.byteLength) throw notOne('trailing bytes');
  return { header, arrays };
}
