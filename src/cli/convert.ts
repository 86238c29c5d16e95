// `q3n convert`: a Hugging Face checkpoint (a folder, or an https URL of a repo) -> a packed model folder.
import { resolve } from 'node:path';
import { Checkpoint } from '../checkpoint/checkpoint.ts';
import { nodeFileSet } from '../checkpoint/node-files.ts';
import { httpFileSet } from '../checkpoint/source.ts';
import { convertCheckpoint, quantForBits, type ConvertProgress } from '../store/convert.ts';
import { NodeStoreWriter } from '../store/node.ts';
import { createPackPool } from '../quant/node-pool.ts';
import { Args, UsageError } from './args.ts';

export const CONVERT_USAGE = 'q3n convert  --model <HF checkpoint dir | https://huggingface.co/<repo>> --out <dir> [--bits 4|8|16|32] [--threads N (default: cores - 1)]';

/** The base URL files resolve against: huggingface.co/<owner>/<name>[/tree/<rev>] -> .../resolve/<rev>/. */
export function hfFileBase(url: string): string {
  const u = new URL(url);
  const parts = u.pathname.split('/').filter(Boolean);
  if (u.hostname !== 'huggingface.co' || parts.length < 2 || parts[2] === 'resolve') return url.endsWith('/') ? url : url + '/';
  const rev = parts[2] === 'tree' && parts[3] ? parts.slice(3).join('/') : 'main';
  return `${u.origin}/${parts[0]}/${parts[1]}/resolve/${rev}/`;
}

export async function convertCommand(args: Args): Promise<void> {
  args.allow(['model', 'out', 'bits', 'threads']);
  const model = args.str('model'), outDir = args.str('out'), bits = args.num('bits', 4);
  const quant = quantForBits(bits);
  if (!quant) throw new UsageError(`--bits must be 4, 8, 16 or 32, got ${bits}`);
  const remote = /^https?:\/\//.test(model);
  if (!remote && resolve(model) === resolve(outDir)) throw new UsageError('--out must be a different folder from --model');

  const ckpt = await Checkpoint.open(remote ? httpFileSet(hfFileBase(model)) : nodeFileSet(model));
  const out = await NodeStoreWriter.create(outDir);
  const t0 = performance.now();
  let last = 0;
  const progress = (p: ConvertProgress) => {
    const now = performance.now();
    if (now - last < 250 && p.done < p.total) return;
    last = now;
    const s = (now - t0) / 1000;
    process.stderr.write(`\rconvert: ${(p.done / 2 ** 30).toFixed(2)} / ${(p.total / 2 ** 30).toFixed(2)} GiB, ${(p.done / 2 ** 20 / s).toFixed(0)} MiB/s, ${p.what}    `);
  };
  const pool = createPackPool(args.has('threads') ? args.num('threads', 1) : undefined);
  let m;
  try {
    m = await convertCheckpoint(ckpt, out, quant, progress, undefined, pool.pack, 2 * pool.threads);
  } finally {
    await pool.close();
  }
  process.stderr.write('\n');
  const bytes = m.data.reduce((n, f) => n + f.bytes, 0);
  const s = (performance.now() - t0) / 1000;
  console.log(`wrote ${outDir}: ${m.dense.length} dense tensors, ${m.experts.length} x ${m.experts[0]?.length ?? 0} experts, ${(bytes / 2 ** 30).toFixed(3)} GiB in ${s.toFixed(1)} s (${pool.threads} packing threads)`);
}
