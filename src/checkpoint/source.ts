// Where checkpoint bytes come from. Everything reads through byte ranges so that a 4 GB shard is never
// held in memory whole: files on disk in Node, HTTP range requests or Blobs in the browser.
import { ModelLoadError } from '../errors.ts';

export interface ByteSource {
  /** A name for error messages: a path or URL. */
  readonly name: string;
  size(): Promise<number>;
  /** Exactly `length` bytes at `offset`, or a rejection. */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** Opens the files of one model folder by relative path (`config.json`, `model-00001-of-00003.safetensors`). */
export interface FileSet {
  readonly root: string;
  open(relativePath: string): ByteSource;
  exists(relativePath: string): Promise<boolean>;
}

/** A whole small file as text; `maxBytes` keeps a hostile or mistaken file from being read into memory. */
export async function readText(source: ByteSource, maxBytes: number): Promise<string> {
  const size = await source.size();
  if (size > maxBytes) {
    throw new ModelLoadError(`${source.name}: ${size} bytes, more than the ${maxBytes} such a file can need. Point at a Hugging Face checkpoint folder.`, source.name);
  }
  return new TextDecoder().decode(await source.read(0, size));
}

export class BlobSource implements ByteSource {
  constructor(readonly name: string, private readonly blob: Blob) {}
  async size(): Promise<number> {
    return this.blob.size;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || offset + length > this.blob.size) throw new ModelLoadError(`${this.name}: read [${offset}, ${offset + length}) past its end (${this.blob.size} bytes): the file is truncated.`, this.name);
    return new Uint8Array(await this.blob.slice(offset, offset + length).arrayBuffer());
  }
}

/** HTTP(S) with Range requests; works against Hugging Face, any static host, or a local dev server. */
export class HttpSource implements ByteSource {
  private length?: number;
  constructor(readonly name: string, private readonly fetchImpl: typeof fetch = globalThis.fetch.bind(globalThis)) {}
  async size(): Promise<number> {
    if (this.length === undefined) {
      const r = await this.fetchImpl(this.name, { method: 'HEAD' });
      const len = Number(r.headers.get('content-length') ?? NaN);
      if (!r.ok || !Number.isSafeInteger(len) || len < 0) {
        throw new ModelLoadError(`${this.name}: HEAD gave status ${r.status} and no usable content-length. Check the URL and that the server allows this origin (CORS).`, this.name);
      }
      this.length = len;
    }
    return this.length;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (length === 0) return new Uint8Array(0);
    const r = await this.fetchImpl(this.name, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
    if (r.status !== 206 && !(r.status === 200 && offset === 0)) throw new ModelLoadError(`${this.name}: range request gave status ${r.status}. Check the URL.`, this.name);
    const bytes = new Uint8Array(await r.arrayBuffer());
    if (bytes.length < length) throw new ModelLoadError(`${this.name}: range request returned ${bytes.length} of ${length} bytes. The server or file is truncated.`, this.name);
    return bytes.length === length ? bytes : bytes.subarray(0, length);
  }
}

export function httpFileSet(baseUrl: string, fetchImpl?: typeof fetch): FileSet {
  const root = baseUrl.endsWith('/') ? baseUrl : baseUrl + '/';
  const f = fetchImpl ?? globalThis.fetch.bind(globalThis);
  return {
    root,
    open: (p) => new HttpSource(root + p, f),
    exists: async (p) => (await f(root + p, { method: 'HEAD' })).ok,
  };
}
