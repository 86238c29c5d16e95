// Node-only FileSet over a folder on disk (the CLI, tests, benchmarks). Reads by byte range with a file handle.
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelLoadError } from '../errors.ts';
import type { ByteSource, FileSet } from './source.ts';

export class NodeFileSource implements ByteSource {
  constructor(readonly name: string) {}
  async size(): Promise<number> {
    return (await stat(this.name)).size;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    const fh = await open(this.name, 'r');
    try {
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw new ModelLoadError(`${this.name}: read [${offset}, ${offset + length}) past the end of the file: it shrank or is truncated. Download it again.`, this.name);
        done += bytesRead;
      }
      return out;
    } finally {
      await fh.close();
    }
  }
}

export function nodeFileSet(dir: string): FileSet {
  return {
    root: dir,
    open: (p) => new NodeFileSource(join(dir, p)),
    exists: async (p) => {
      try {
        return (await stat(join(dir, p))).isFile();
      } catch {
        return false;
      }
    },
  };
}
