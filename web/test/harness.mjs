// What the browser tests share: a real `blindpass serve` on a free
// 127.0.0.1 port with its own data directory, Debian's Chromium driven by
// playwright-core (never a downloaded browser), and the CLI for checks.
//
// BLINDPASS_BIN names the built binary (tests/browser.rs sets it);
// CHROMIUM the browser (default /usr/bin/chromium).

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const BIN = process.env.BLINDPASS_BIN;
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** A phone screen. */
export const PHONE = { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

if (!BIN || !existsSync(BIN)) throw new Error('set BLINDPASS_BIN to the built blindpass binary');

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

export function tempDir(label) {
  return mkdtempSync(join(tmpdir(), `blindpass-${label}-`));
}

/**
 * Starts `serve --dev` and resolves once it answers /healthz. `port` and
 * `dataDir` restart an issuer where another one was (same origin for the
 * browser, same or another data directory); `args` are added to serve's.
 */
export async function startServer({ port, dataDir, args = [] } = {}) {
  const dir = tempDir('web');
  port ??= await freePort();
  dataDir ??= join(dir, 'data');
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(BIN, ['serve', '--dev', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, '--key-horizon-days', '2', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // The server never outlives the test process, even one that is killed.
  process.once('exit', () => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`serve exited: ${stderr}`);
    try {
      const response = await fetch(`${base}/healthz`);
      if (response.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`serve did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    port,
    dir,
    dataDir,
    cli(...args) {
      return execFileSync(BIN, args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    },
    /** Stops the issuer; its working directory is removed unless `keep`. */
    async stop({ keep = false } = {}) {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      if (!keep) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Chromium, headless; `camera` is a y4m file for the fake camera. */
export function launch({ camera } = {}) {
  const args = ['--no-sandbox', '--disable-dev-shm-usage'];
  if (camera) {
    args.push('--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', `--use-file-for-fake-video-capture=${camera}`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}

/** Collects CSP violations and page errors, so a test can assert none. */
export function watch(page) {
  const problems = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(String(error)));
  return problems;
}

/** A y4m video of a still picture, for --use-file-for-fake-video-capture. */
export function y4mFrom(png, out) {
  execFileSync('ffmpeg', ['-loglevel', 'error', '-y', '-loop', '1', '-i', png, '-t', '1', '-r', '10',
    '-vf', 'scale=440:440:flags=neighbor,pad=640:480:100:20:white', '-pix_fmt', 'yuv420p', '-f', 'yuv4mpegpipe', out]);
}
