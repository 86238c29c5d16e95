// Chatting before the download completes (issue #17), measured in Chromium on this machine: brown-tiny-q4 from the
// dev server through a simulated line of R MB/s (every model byte queued through one pipe: a response finishes
// bytes / R after the previous one), a fresh profile per run. For each rate, the whole download first (cache: true)
// against the dense part first (backgroundExperts): time from page open to 'ready', to the reply's first token,
// the reply's tokens/s (the fill running meanwhile), and when the last expert was stored. SwiftShader runs the model,
// so the compute figures are this machine's; the download figures are the line's.
//   npx vitest run --config vitest.measure.config.ts bench/partial-download.measure.ts
import { it } from 'vitest';
import { startBrowser } from '../test/helpers/browser.ts';

const MODEL = '/models/brown-tiny-q4/';
const PROMPT = 'The jury said it did find that many of the voters were not qualified.';
const RATES = (process.env.RATES ?? '10,1').split(',').map(Number); // MB/s

it('time to the first token, whole download against the dense part first', async () => {
  const session = await startBrowser();
  const rows: string[] = [];
  try {
    for (const rate of RATES) {
      for (const background of [false, true]) {
        const tp = await session.open('/test/browser/pages/engine.html', 'engineTest');
        let free = 0, bytes = 0; // when the simulated line is free next (ms, performance.now), bytes through it
        await tp.page.context().route(`**${MODEL}**`, async (route) => {
          const res = await route.fetch(), body = await res.body();
          bytes += body.length;
          const now = performance.now();
          free = Math.max(free, now) + body.length / (rate * 1e3); // rate MB/s = rate * 1e3 bytes a ms
          await new Promise((r) => setTimeout(r, free - now));
          await route.fulfill({ response: res, body });
        });
        const t0 = performance.now();
        const load = await tp.page.evaluate(([m, b]) => window.engineTest.load(m, true, b), [MODEL, background] as const);
        const ready = performance.now() - t0, bytesAtReady = bytes;
        const reply = await tp.page.evaluate((p) => window.engineTest.stream(p, 16), PROMPT);
        let filled = ready;
        if (background) {
          for (;;) {
            const f = await tp.page.evaluate(() => window.engineTest.fillState());
            if (f.last && f.last.loaded >= f.last.total) break;
            await new Promise((r) => setTimeout(r, 100));
          }
          filled = performance.now() - t0;
        }
        const usage = reply.usage as { decode_tokens_per_s: number; prefill_tokens_per_s: number };
        rows.push(`| ${rate} MB/s | ${background ? 'dense first (backgroundExperts)' : 'whole model first'} | ${(bytesAtReady / 1e6).toFixed(1)} MB | ${(ready / 1000).toFixed(1)} s | ` +
          `${((ready + reply.firstTokenMs) / 1000).toFixed(1)} s | ${usage.decode_tokens_per_s.toFixed(1)} | ${(filled / 1000).toFixed(1)} s | ${load.last} |`);
        await tp.page.evaluate(() => window.engineTest.unload());
        await tp.page.context().close();
      }
    }
  } finally {
    await session.close();
  }
  console.log(['| line | mode | bytes before ready | load -> ready | load -> first token | reply tok/s | every record stored | last load phase |', '|---|---|---|---|---|---|---|---|', ...rows].join('\n'));
});
