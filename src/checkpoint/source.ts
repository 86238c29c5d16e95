// Where checkpoint bytes come from. Everything reads through byte ranges so that a 4 GB shard is never
// held in memory whole: files on disk in Node, HTTP range requests or Blobs in the browser.

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

export async function readText(source: ByteSource): Promise<string> {
  const size = await source.size();
  return new TextDecoder().decode(await source.read(0, size));
}

export class BlobSource implements ByteSource {
  constructor(readonly name: string, private readonly blob: Blob) {}
  async size(): Promise<number> {
    return this.blob.size;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || offset + length > this.blob.size) throw new RangeError(`${this.name}: read [${offset}, ${offset + length}) past end ${this.blob.size}`);
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
      const len = r.headers.get('content-length');
      if (!r.ok || len === null) throw new Error(`${this.name}: HEAD gave status ${r.status} and no content-length`);
      this.length = Number(len);
    }
    return this.length;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (length === 0) return new Uint8Array(0);
    const r = await this.fetchImpl(this.name, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
    if (r.status !== 206 && !(r.status === 200 && offset === 0)) throw new Error(`${this.name}: range request gave status ${r.status}`);
    const bytes = new Uint8Array(await r.arrayBuffer());
    if (bytes.length < length) throw new Error(`${this.name}: range request returned ${bytes.length} of ${length} bytes`);
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
