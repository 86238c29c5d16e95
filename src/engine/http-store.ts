// A packed model served over HTTP (a static folder: manifest.json + data and tokenizer files). Records are read
// with Range requests; a server that ignores Range (200 with the whole file) is handled by keeping that file's
// body and slicing it, so each file crosses the network once either way. No other URL is ever fetched.
import { showValue } from '../config.ts';
import { ModelLoadError } from '../errors.ts';
import { isPlainName, MANIFEST, parseManifest, type Manifest } from '../store/manifest.ts';
import { PackedStore } from '../store/store.ts';

export class HttpStore extends PackedStore {
  private readonly whole = new Map<string, Promise<ArrayBuffer>>();

  private constructor(readonly baseURL: string, m: Manifest, private readonly fetchFn: typeof fetch) {
    super(m);
  }

  /** `url`: the model folder (with or without a trailing slash), absolute or relative to the page. */
  static async open(url: string, fetchFn: typeof fetch = globalThis.fetch.bind(globalThis)): Promise<HttpStore> {
    const base = url.endsWith('/') ? url : `${url}/`;
    const manifestURL = new URL(MANIFEST, new URL(base, globalThis.location?.href)).href;
    const res = await fetchFn(manifestURL).catch((e: Error) => {
      throw new ModelLoadError(`${manifestURL}: ${e.message}. Check the model URL and that the server allows this origin (CORS).`, MANIFEST, undefined, { cause: e });
    });
    if (!res.ok) throw new ModelLoadError(`${manifestURL}: HTTP ${res.status}. The model URL must point at a packed model folder (written by \`q3n convert\`).`, MANIFEST);
    return new HttpStore(manifestURL.slice(0, -MANIFEST.length), parseManifest(await res.text()), fetchFn);
  }

  protected async readRange(file: string, offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
    const cached = this.whole.get(file);
    if (cached) return new Uint8Array((await cached).slice(offset, offset + length));
    // parseManifest allows plain names only; checked again here because a name with '/', '..', ':', '?' or '%'
    // is the one way a URL could leave the model folder.
    if (!isPlainName(file)) throw new ModelLoadError(`${showValue(file)} is not a file name inside the model folder ${this.baseURL}.`, String(file));
    const url = this.baseURL + file;
    const res = await this.fetchFn(url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
    if (res.status === 206) return new Uint8Array(await res.arrayBuffer());
    if (res.status !== 200) throw new ModelLoadError(`${url}: HTTP ${res.status}. The packed model on the server is incomplete: upload the whole folder.`, file);
    const body = res.arrayBuffer();
    this.whole.set(file, body);
    return new Uint8Array((await body).slice(offset, offset + length));
  }

  async close(): Promise<void> {
    this.whole.clear();
  }
}
