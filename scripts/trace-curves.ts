// The per-layer LRU hit rate of each routing trace (bench/traces.ts) against the expert slots a layer keeps, at
// Qwen3-Next's shape (512 experts, top-10): a markdown table on stdout and docs/trace-hit-rates.svg.
//   npx tsx scripts/trace-curves.ts
import { writeFileSync } from 'node:fs';
import { lruHitRate, makeTrace, reuseDistances, type TraceKind } from '../bench/traces.ts';

const E = 512, k = 10, L = 8, WARM = 300, TOKENS = 2300;
const SLOTS = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384];
const KINDS: [TraceKind, string][] = [['calibrated', '#c0392b'], ['zipf', '#2471a3'], ['uniform', '#7f8c8d']];

const curves = KINDS.map(([kind]) => {
  const trace = makeTrace(kind, L, E, k, { zipfS: 1, reuse: 0.5 }, 11);
  return { kind, rates: SLOTS.map((s) => lruHitRate(trace, L, WARM, TOKENS, s)), reuse: reuseDistances(trace, L, WARM, TOKENS) };
});

console.log(`| slots a layer (of ${E}) | ${SLOTS.join(' | ')} |`);
console.log(`|---|${SLOTS.map(() => '---').join('|')}|`);
for (const c of curves) console.log(`| ${c.kind} | ${c.rates.map((r) => `${(100 * r).toFixed(1)}`).join(' | ')} |`);
for (const c of curves) console.log(`${c.kind}: ${(100 * c.reuse.next).toFixed(1)} % of picks repeat the previous token's, ${(100 * c.reuse.within8).toFixed(1)} % within 8 tokens`);

// the plot: hit rate (0..1) against slots on a log axis, the published points as rings
const W = 640, H = 360, X0 = 60, Y0 = 20, PW = 540, PH = 290;
const x = (s: number) => (X0 + (PW * Math.log(s / SLOTS[0])) / Math.log(SLOTS[SLOTS.length - 1] / SLOTS[0])).toFixed(1);
const y = (r: number) => (Y0 + PH * (1 - r)).toFixed(1);
const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`];
for (const r of [0, 0.25, 0.5, 0.75, 1]) parts.push(`<line x1="${X0}" x2="${X0 + PW}" y1="${y(r)}" y2="${y(r)}" stroke="#ddd"/><text x="${X0 - 8}" y="${y(r) + 4}" text-anchor="end">${r * 100}%</text>`);
for (const s of SLOTS) parts.push(`<text x="${x(s)}" y="${Y0 + PH + 16}" text-anchor="middle">${s}</text>`);
parts.push(`<text x="${X0 + PW / 2}" y="${H - 4}" text-anchor="middle">expert slots a layer (log scale), LRU, 512 experts, top-10</text>`);
curves.forEach((c, i) => {
  parts.push(`<polyline fill="none" stroke="${KINDS[i][1]}" stroke-width="2" points="${SLOTS.map((s, j) => `${x(s)},${y(c.rates[j])}`).join(' ')}"/>`);
  parts.push(`<text x="${X0 + 10}" y="${Y0 + 16 + 16 * i}" fill="${KINDS[i][1]}">${c.kind}</text>`);
});
for (const [s, r] of [[64, 0.67], [128, 0.81]]) parts.push(`<circle cx="${x(s)}" cy="${y(r)}" r="6" fill="none" stroke="black" stroke-width="1.5"/>`);
parts.push(`<text x="${X0 + 10}" y="${Y0 + 16 + 16 * KINDS.length}">○ published (real routers, this shape)</text>`, '</svg>');
writeFileSync(new URL('../docs/trace-hit-rates.svg', import.meta.url), parts.join('\n') + '\n');
console.log('wrote docs/trace-hit-rates.svg');
