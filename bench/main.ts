// Entry of dist/bench/bench.mjs: prints the benchmark table as markdown (paste it into BENCHMARKS.md with the card).
import { runBench, markdown } from './bench.ts';

const shapes = process.argv.includes('--shapes') ? process.argv[process.argv.indexOf('--shapes') + 1] : 'real';
if (shapes !== 'real' && shapes !== 'tiny') throw new Error(`--shapes real|tiny, got ${shapes}`);
console.log(`${new Date().toISOString()} shapes=${shapes}`);
console.log(markdown(await runBench(shapes)));
process.exit(0);
