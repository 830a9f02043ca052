// The size budget of the built pages (gzip -9, what a phone downloads
// through a compressing proxy): the wallet's script at most 120 KiB, the
// verifier's script and QR reader together at most 1.5 MiB.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const dist = new URL('../dist/', import.meta.url);
const gzipped = (name) => gzipSync(readFileSync(new URL(name, dist)), { level: 9 }).length;

test('the wallet script fits 120 KiB gzipped', () => {
  const size = gzipped('wallet.js');
  console.log(`wallet.js: ${(size / 1024).toFixed(1)} KiB gzipped`);
  assert.ok(size <= 120 * 1024, `${size} bytes`);
});

test('the verifier script and its wasm fit 1.5 MiB gzipped', () => {
  const script = gzipped('verify.js');
  const wasm = gzipped('zxing_reader.wasm');
  console.log(`verify.js: ${(script / 1024).toFixed(1)} KiB, zxing_reader.wasm: ${(wasm / 1024).toFixed(1)} KiB gzipped`);
  assert.ok(script + wasm <= 1.5 * 1024 * 1024, `${script + wasm} bytes`);
});
