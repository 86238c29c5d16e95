// Node-only: a packed model in a folder on disk. Reads by byte range through one kept-open handle per file.
import { mkdir, open, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { showValue } from '../config.ts';
import { ModelLoadError } from '../errors.ts';
import { FORMAT, MANIFEST, isPlainName, parseManifest, type Manifest } from './manifest.ts';
import { PackedStore, type StoreWriter } from './store.ts';

/** `dir`/`file`, for a plain file name only: parseManifest already guarantees it; this keeps every path inside `dir`. */
function inside(dir: string, file: string): string {
  if (!isPlainName(file)) throw new ModelLoadError(`${showValue(file)} is not a plain file name: a packed model only names files in its own folder.`, String(file));
  return join(dir, file);
}

export class NodeFileStore extends PackedStore {
  private readonly handles = new Map<string, Promise<FileHandle>>();

  private constructor(readonly dir: string, m: Manifest) {
    super(m);
  }

  /** Parse and check manifest.json, and that every file it lists is there at its full size. */
  static async open(dir: string): Promise<NodeFileStore> {
    let text: string;
    try {
      text = await readFile(join(dir, MANIFEST), 'utf8');
    } catch (e) {
      throw new ModelLoadError(
        `${dir}: no ${MANIFEST}. This is not a packed model, or its conversion did not finish: run \`q3n convert\` again.`,
        MANIFEST,
        undefined,
        { cause: e },
      );
    }
    const m = parseManifest(text);
    for (const f of [...m.files, ...m.data]) {
      const actual = await stat(inside(dir, f.name)).then((s) => (s.isFile() ? s.size : -1), () => -1); // no FIFOs or devices
      if (actual !== f.bytes) {
        throw new ModelLoadError(
          `${dir}/${f.name}: ${actual < 0 ? 'missing (or not a regular file)' : `${actual} bytes`}, the manifest says ${f.bytes}. Copy the whole folder, or convert again.`,
          f.name,
        );
      }
    }
    return new NodeFileStore(dir, m);
  }

  protected async readRange(file: string, offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
    let fh = this.handles.get(file);
    if (!fh) this.handles.set(file, (fh = open(inside(this.dir, file), 'r')));
    const out = new Uint8Array(length);
    for (let done = 0; done < length; ) {
      const { bytesRead } = await (await fh).read(out, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return out;
  }

  async close(): Promise<void> {
    const hs = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(hs.map(async (h) => (await h).close()));
  }
}

export class NodeStoreWriter implements StoreWriter {
  private readonly handles = new Map<string, Promise<FileHandle>>();

  private constructor(readonly dir: string) {}

  /** Creates `dir`; removes an old packed model's manifest first so an interrupted re-conversion never looks complete. */
  static async create(dir: string): Promise<NodeStoreWriter> {
    await mkdir(dir, { recursive: true });
    const old = await readFile(join(dir, MANIFEST), 'utf8').catch(() => undefined);
    if (old !== undefined) {
      let format: unknown;
      try {
        format = JSON.parse(old).format;
      } catch {}
      if (format !== FORMAT) throw new ModelLoadError(`${dir} holds a ${MANIFEST} that is not a packed model's. Convert into an empty folder.`, MANIFEST);
      await rm(join(dir, MANIFEST));
    }
    return new NodeStoreWriter(dir);
  }

  async write(file: string, offset: number, bytes: Uint8Array): Promise<void> {
    let fh = this.handles.get(file);
    if (!fh) this.handles.set(file, (fh = open(inside(this.dir, file), 'w')));
    const h = await fh;
    for (let done = 0; done < bytes.length; ) {
      done += (await h.write(bytes, done, bytes.length - done, offset + done)).bytesWritten;
    }
  }

  async commit(manifest: Manifest): Promise<void> {
    for (const fh of this.handles.values()) {
      const h = await fh;
      await h.sync();
      await h.close();
    }
    this.handles.clear();
    const tmp = join(this.dir, `${MANIFEST}.tmp`);
    await writeFile(tmp, JSON.stringify(manifest));
    await rename(tmp, join(this.dir, MANIFEST));
  }
}
