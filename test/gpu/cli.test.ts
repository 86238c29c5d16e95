// q3n logits / generate in-process: outputs equal the HF fixtures; bad input gives one line and a non-zero code.
import { describe, expect, it, vi } from 'vitest';
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/q3n.ts';
import { locatePreset, readTensorFile, brownTinyAvailable } from '../helpers/fixtures.ts';
import { expectClose } from '../helpers/compare.ts';

describe('q3n CLI', () => {
  it('logits: chunked prefill + teacher-forced decode equal HF (tiny decode case)', async () => {
    const p = locatePreset('tiny')!, c = p.case('decode_P70'), t = await p.load(c);
    const decodeIds = Array.from(t.get('input_ids')!.data.subarray(0, 3));
    const out = join(mkdtempSync(join(tmpdir(), 'q3n-')), 'out.safetensors');
    const code = await main(['logits', '--model', p.dir, '--prompt-ids', c.prompt_ids!.join(','), '--decode-ids', decodeIds.join(','), '--out', out]);
    expect(code).toBe(0);
    const got = await readTensorFile(out), V = 512;
    const prefill = got.get('prefill_logits')!;
    expect(prefill.shape).toEqual([70, V]);
    expectClose('last prefill row', prefill.data.subarray(69 * V), t.get('prefill_last_logits')!.data, { maxAbs: 1e-3 });
    expectClose('decode_logits', got.get('decode_logits')!.data, t.get('step_logits')!.data.subarray(0, 3 * V), { maxAbs: 1e-3 });
  });

  it('--yarn 4 on a config without rope_scaling: HF\'s YaRN logits (factor 4 over max_position_embeddings, the model card\'s recipe)', async () => {
    const p = locatePreset('yarn')!, c = p.case('prefill_T65'), want = (await p.load(c)).get('logits')!.data;
    // the yarn fixture's checkpoint as the released ones ship: no rope_scaling, its original 64 positions as max
    const dir = mkdtempSync(join(tmpdir(), 'q3n-yarn-'));
    const config = JSON.parse(readFileSync(join(p.dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, rope_scaling: null, max_position_embeddings: 64 }));
    symlinkSync(join(p.dir, 'model.safetensors'), join(dir, 'model.safetensors'));
    const out = join(dir, 'out.safetensors');
    expect(await main(['logits', '--model', dir, '--prompt-ids', c.input_ids!.join(','), '--yarn', '4', '--max-context', '66', '--out', out])).toBe(0);
    expectClose('prefill_logits', (await readTensorFile(out)).get('prefill_logits')!.data, want, { maxAbs: 1e-3 });
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      expect(await main(['logits', '--model', dir, '--prompt-ids', '1', '--max-context', '66', '--out', out])).toBe(1);
      expect(String(err.mock.calls.at(-1)![0])).toMatch(/ContextLengthError: maxContext 66 is past the 64 positions .* Turn on YaRN .*--yarn\) for up to 256/);
    } finally {
      err.mockRestore();
    }
  });

  // the packed int4 model (its MTP layer int4) with --draft-tokens: HF's greedy reply (plain decoding gives it too:
  // engine.test.ts, whose reply equals this one; SwiftShader's time keeps the CLI to one run)
  it.runIf(brownTinyAvailable())('generate --chat: brown-tiny greedy reply equals HF golden text with --draft-tokens 2 (packed int4)', async () => {
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const info = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    let text = '', stats = '';
    try {
      const code = await main(['generate', '--prompt', 'The jury said it did find that many of the voters were not qualified.', '--chat', '--max-tokens', '16', '--model', 'public/models/brown-tiny-q4', '--draft-tokens', '2']);
      text = write.mock.calls.map((c) => String(c[0])).join('');
      stats = info.mock.calls.map((c) => String(c[0])).join('');
      expect(code).toBe(0);
    } finally {
      write.mockRestore();
      info.mockRestore();
    }
    expect(text).toBe("These weren't it??\n");
    expect(stats).toMatch(/^speculative: \d+ of \d+ drafts accepted in \d+ verify steps/);
  });

  it('bad input: one clear line and a non-zero exit code', async () => {
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      expect(await main(['logits', '--model', '/nonexistent', '--prompt-ids', '1', '--out', '/tmp/x'])).toBe(1);
      expect(String(err.mock.calls.at(-1)![0])).toMatch(/ConfigError: .*no config.json/);
      expect(await main(['logits', '--model', 'x', '--prompt-ids', '1,a', '--out', '/tmp/x'])).toBe(2);
      expect(String(err.mock.calls.at(-1)![0])).toMatch(/"a" is not a token id/);
      expect(await main(['generate', '--model', 'x', '--bogus', '1'])).toBe(2);
      expect(await main(['frobnicate'])).toBe(2);
      expect(await main(['logits', '--model', 'x', '--prompt-ids', '1', '--yarn', 'maybe', '--out', '/tmp/x'])).toBe(2);
      expect(String(err.mock.calls.at(-1)![0])).toMatch(/--yarn must be on, off or a factor >= 1, got "maybe"/);
      expect(await main(['logits', '--model', 'x', '--prompt-ids', '1', '--max-context', '0', '--out', '/tmp/x'])).toBe(2);
      expect(await main(['generate', '--model', 'x', '--prompt', 'hi', '--draft-tokens', '5'])).toBe(2);
      expect(String(err.mock.calls.at(-1)![0])).toMatch(/--draft-tokens must be 1, 2 or 3/);
      expect(await main(['generate', '--model', 'public/models/brown-tiny-q4', '--prompt', 'hi', '--cache-aware-routing', '3'])).toBe(2);
      expect(String(err.mock.calls.at(-1)![0])).toMatch(/--cache-aware-routing needs --expert-cache-bytes/);
    } finally {
      err.mockRestore();
    }
  });
});
