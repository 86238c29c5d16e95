// The layers of src/, lowest first: a module may import its own layer and the layers below it, never one above,
// and no import cycle is allowed anywhere. docs/ARCHITECTURE.md describes the same table; test/unit/
// architecture.test.ts runs this config over src/ (and over a planted bad tree, to show it catches both).
// The CPU reference is an oracle beside the runtime: it reads checkpoints and config, and nothing imports it.
const LAYERS = [
  ['base', '^src/(config|errors)\\.ts$'],
  ['inputs', '^src/(quant|checkpoint|tokenizer)/'],
  ['format', '^src/format/'],
  ['gpu', '^src/gpu/'],
  ['kernels', '^src/kernels/'],
  ['model', '^src/model/'],
  ['cache/store', '^src/(cache|store)/'],
  ['engine', '^src/engine/'],
  ['entries', '^src/(cli/|index\\.ts$|worker\\.ts$)'],
];

const above = (i) => LAYERS.slice(i + 1).map(([, path]) => path);

module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'An import cycle: modules that need each other belong in one module, or one of them in a lower layer.',
      from: {},
      to: { circular: true },
    },
    ...LAYERS.slice(0, -1).map(([name, path], i) => ({
      name: `${name}-imports-up`,
      severity: 'error',
      comment: `src/ layer '${name}' imports a layer above it (${LAYERS.slice(i + 1).map(([n]) => n).join(', ')}).`,
      from: { path },
      to: { path: above(i) },
    })),
    {
      name: 'cache-store-apart',
      severity: 'error',
      comment: 'The expert cache and the store sit side by side: neither imports the other (the model reads the format).',
      from: { path: '^src/cache/' },
      to: { path: '^src/store/' },
    },
    {
      name: 'store-cache-apart',
      severity: 'error',
      comment: 'The expert cache and the store sit side by side: neither imports the other.',
      from: { path: '^src/store/' },
      to: { path: '^src/cache/' },
    },
    {
      name: 'runtime-imports-reference',
      severity: 'error',
      comment: 'The runtime must not lean on its oracle: each has its own code, both checked against HF fixtures.',
      from: { path: '^src/', pathNot: '^src/reference/' },
      to: { path: '^src/reference/' },
    },
    {
      name: 'reference-imports-runtime',
      severity: 'error',
      comment: 'The CPU reference reads checkpoints and config only: a shared helper would hide a bug in both.',
      from: { path: '^src/reference/' },
      to: { path: '^src/', pathNot: '^src/(reference/|checkpoint/|quant/|config\\.ts$|errors\\.ts$)' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '\\.(wgsl|json)(\\?raw)?$' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs'] },
  },
};
