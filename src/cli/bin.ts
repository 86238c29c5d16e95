// The `q3n` executable's entry (bundled to dist/node/q3n.mjs by vite.node.config.ts).
import { main } from './q3n.ts';

main(process.argv.slice(2)).then((code) => process.exit(code));
