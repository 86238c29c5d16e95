// The expert heatmap: rows are layers, columns experts, one pixel wide and ROW pixels high per cell (the last one
// white, to set layers apart), scaled up by CSS with pixelated rendering, so the same drawing fits brown-tiny
// (8 x 64) and the real model (48 x 512). A cell's colour
// says how the expert cache served it (blue: found on the GPU, orange: streamed in, mixed in proportion) and its
// strength how often the router picked it (log scale against the busiest cell); never picked: the pale background.

/** Per layer, per expert: how often the expert ran from a GPU slot (hits) or had to be uploaded first (misses). */
export interface ExpertUse {
  hits: number[];
  misses: number[];
}

/** Canvas pixel rows per layer: ROW - 1 of colour, then a white one. */
export const ROW = 4;
const PALE: RGB = [240, 241, 244];
const HIT: RGB = [47, 91, 211]; // the page's blue (#2f5bd3)
const MISS: RGB = [232, 89, 12]; // orange (#e8590c)
type RGB = [number, number, number];
const mix = (a: RGB, b: RGB, t: number): RGB => [0, 1, 2].map((i) => a[i] + (b[i] - a[i]) * t) as RGB;

/** `use` minus `before` (the counters are totals since the model loaded): what one reply did. */
export function useSince(use: ExpertUse[], before?: ExpertUse[]): ExpertUse[] {
  if (!before) return use;
  return use.map((u, l) => ({ hits: u.hits.map((h, e) => h - before[l].hits[e]), misses: u.misses.map((m, e) => m - before[l].misses[e]) }));
}

export function drawHeatmap(canvas: HTMLCanvasElement, use: ExpertUse[]): void {
  const L = use.length, E = use[0].hits.length;
  canvas.width = E;
  canvas.height = L * ROW;
  canvas.style.height = `${Math.min(240, Math.max(64, L * 12))}px`; // rows tall enough to tell apart
  let max = 1;
  for (const u of use) for (let e = 0; e < E; e++) max = Math.max(max, u.hits[e] + u.misses[e]);
  const ctx = canvas.getContext('2d')!;
  const img = ctx.createImageData(E, L * ROW);
  img.data.fill(255); // white: the gap rows
  use.forEach((u, l) => {
    for (let e = 0; e < E; e++) {
      const n = u.hits[e] + u.misses[e];
      const rgb = n === 0 ? PALE : mix(PALE, mix(HIT, MISS, u.misses[e] / n), 0.3 + (0.7 * Math.log1p(n)) / Math.log1p(max));
      for (let y = 0; y < ROW - 1; y++) img.data.set([...rgb.map(Math.round), 255], ((l * ROW + y) * E + e) * 4);
    }
  });
  ctx.putImageData(img, 0, 0);
}
