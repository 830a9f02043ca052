// Builds web/dist/ from web/src/ and web/static/: one esbuild bundle per
// page plus the service worker, the static files, and the QR reader's wasm.
// The output depends on the sources and the locked packages only (no
// timestamps, no absolute paths), so CI can rebuild it and compare.

import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const here = new URL('.', import.meta.url).pathname;
const dist = join(here, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);

await build({
  absWorkingDir: here,
  entryPoints: ['src/wallet.js', 'src/verify.js', 'src/transparency.js'],
  outdir: 'dist',
  bundle: true,
  format: 'esm',
  minify: true,
  target: ['chrome110', 'firefox115', 'safari16'],
  legalComments: 'eof',
  charset: 'utf8',
  logLevel: 'warning',
});

for (const name of readdirSync(join(here, 'static'))) {
  copyFileSync(join(here, 'static', name), join(dist, name));
}
copyFileSync(join(here, 'node_modules/zxing-wasm/dist/reader/zxing_reader.wasm'), join(dist, 'zxing_reader.wasm'));

// The worker's cache is named after everything it keeps.
const digest = createHash('sha256');
for (const name of readdirSync(dist).sort()) digest.update(name).update(readFileSync(join(dist, name)));
const worker = readFileSync(join(here, 'src/sw.js'), 'utf8').replace('__BUILD_ID__', digest.digest('hex').slice(0, 16));
writeFileSync(join(dist, 'sw.js'), worker);
