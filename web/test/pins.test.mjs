// The deletion page and the wallet against issuers that change under them:
// a period destroyed after its deadline, an early end, and a device that
// pinned the log key and checkpoint meeting a rewritten log and then a log
// under another key, served from the same origin.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, launch, PHONE, watch, tempDir } from './harness.mjs';

const TEST_TIMEOUT_MS = 240_000;
const SHOTS = process.env.SCREENSHOTS;
// The scheduled expiry pass never runs during the test (once a year); the
// pass every start runs is the one that destroys.
const NO_SCHEDULE = ['--expiry-cron', '0 0 0 1 1 *'];
const RED = 'rgb(165, 14, 14)';
const GREEN = 'rgb(10, 107, 45)';

let server;
let browser;
let context;
let snapshot;
const ids = {};

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

function admin(...args) {
  return server.cli('admin', '--server', server.base, '--token-file', join(server.dataDir, 'admin.token'), ...args);
}

function iso(ms) {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

/** Cells of a period's row on the deletion page, by column. */
async function row(page, id) {
  const locator = page.locator(`tr[data-period="${id}"]`);
  const cells = await locator.locator('th, td').allTextContents();
  return {
    className: await locator.getAttribute('class'),
    end: cells[1], deadline: cells[2], destroyed: cells[3], status: cells[4],
    statusColor: await locator.locator('td').nth(3).evaluate((e) => getComputedStyle(e).color),
  };
}

function utc(text) {
  return Date.parse(text.replace(' ', 'T').replace(' UTC', 'Z'));
}

async function transparency() {
  const page = await context.newPage();
  const problems = watch(page);
  await page.goto(`${server.base}/transparency`);
  await page.waitForSelector('body.ready');
  return { page, problems };
}

before(async () => {
  server = await startServer({ args: NO_SCHEDULE });
  browser = await launch();
  context = await browser.newContext({ ...PHONE, locale: 'en-US' });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('deletion page: an early end says so, and a destruction after its deadline shows LATE in red', { timeout: TEST_TIMEOUT_MS }, async () => {
  const now = Date.now();
  // Ended early, with a day of grace: its deadline is a day after the
  // early end, before its planned end; its key is not destroyed yet.
  const planned = iso(now + 3 * 86_400_000);
  ids.early = JSON.parse(admin('--json', 'period', 'open', '--name', 'ended-early', '--ends-at', planned, '--grace-s', '86400')).id;
  admin('period', 'end', ids.early);
  // Due in a few seconds with no grace, while no expiry pass runs; the
  // page is read once the deadline is two seconds past.
  const due = Date.now() + 5_000;
  ids.late = JSON.parse(admin('--json', 'period', 'open', '--name', 'missed', '--ends-at', iso(due), '--grace-s', '0')).id;
  await new Promise((r) => setTimeout(r, Math.max(0, due + 2_000 - Date.now())));

  let { page, problems } = await transparency();
  let missed = await row(page, ids.late);
  assert.equal(missed.className, 'period overdue');
  assert.equal(missed.statusColor, RED);
  const early = await row(page, ids.early);
  const [, endedAt, plannedAt] = /^(.+ UTC), ended early \(planned: (.+ UTC)\)$/.exec(early.end) ?? [];
  assert.ok(endedAt, `the end says it was early: ${early.end}`);
  assert.equal(plannedAt, planned.replace('T', ' ').replace('Z', ' UTC'));
  // What the log says happened: ended, then a deadline one grace later,
  // which is before the planned end.
  assert.equal(utc(early.deadline) - utc(endedAt), 86_400_000);
  assert.ok(utc(early.deadline) < utc(plannedAt));
  assert.equal(early.className, 'period ended');
  assert.deepEqual(problems, []);
  await page.close();

  // The issuer comes back after the deadline: its start pass destroys the
  // key, late, and the log says so.
  await server.stop({ keep: true });
  snapshot = join(tempDir('snapshot'), 'data');
  cpSync(server.dataDir, snapshot, { recursive: true });
  server = await startServer({ port: server.port, dataDir: server.dataDir, args: NO_SCHEDULE });
  ({ page, problems } = await transparency());
  missed = await row(page, ids.late);
  assert.equal(missed.className, 'period late');
  const late = Number(/^LATE: destroyed (\d+) s after the deadline$/.exec(missed.status)?.[1]);
  assert.ok(late >= 2, missed.status);
  assert.ok(utc(missed.destroyed) - utc(missed.deadline) >= late * 1000);
  assert.equal(missed.statusColor, RED);
  await shot(page, 'transparency');
  assert.deepEqual(problems, []);
  await page.close();
});

test('deletion page and wallet pin the log on first use and warn in red when history is rewritten or the key changes', { timeout: TEST_TIMEOUT_MS }, async () => {
  assert.ok(snapshot, 'needs the issuer of the first test');
  // First visit (the first test's pages pinned already on this device):
  // the pins hold, and the wallet shows the pinned key.
  const served = (await (await fetch(`${server.base}/audit/key`)).text()).trim();
  let { page, problems } = await transparency();
  assert.match(await page.textContent('#summary'), /Consistent with the checkpoint this device pinned before \(\d+ entries\)\./);
  assert.equal(await page.isVisible('#log-warning'), false);
  await page.close();
  const wallet = await context.newPage();
  const walletProblems = watch(wallet);
  await wallet.goto(`${server.base}/`);
  await wallet.waitForFunction((key) => document.getElementById('log-key').textContent === key, served);
  assert.ok(await wallet.locator('#log-key').isVisible());
  assert.equal(await wallet.isVisible('#log-warning'), false);
  assert.deepEqual(walletProblems, []);
  const pinnedSize = await wallet.evaluate(() => JSON.parse(localStorage.getItem('blindpass.checkpoint')).size);

  // The same issuer restarted on a copy of its data taken before the late
  // destruction: same key, but the entries after the copy are written
  // again at other times. The device's pinned root is no prefix of it.
  await server.stop();
  server = await startServer({ port: server.port, dataDir: snapshot, args: NO_SCHEDULE });
  ({ page, problems } = await transparency());
  const warning = page.locator('#log-warning');
  await warning.waitFor();
  assert.match(await warning.textContent(), new RegExp(`^WARNING: the audit log (is shorter than the checkpoint this device pinned \\(${pinnedSize} entries\\)|no longer starts with the ${pinnedSize} entries this device pinned): history was rewritten\\. Do not trust it\\.$`));
  assert.equal(await warning.evaluate((e) => getComputedStyle(e).color), RED);
  assert.equal(await page.locator('#periods tr').count(), 0);
  await shot(page, 'transparency-rewritten');
  await page.close();
  await wallet.reload();
  await wallet.locator('#log-warning').waitFor();
  assert.match(await wallet.textContent('#log-warning'), /history was rewritten/);
  // The warning stays: the pin is not moved to the rewritten log.
  assert.equal(await wallet.evaluate(() => JSON.parse(localStorage.getItem('blindpass.checkpoint')).size), pinnedSize);

  // Another data directory on the same origin: another log key.
  await server.stop({ keep: true });
  server = await startServer({ port: server.port, args: NO_SCHEDULE });
  const other = (await (await fetch(`${server.base}/audit/key`)).text()).trim();
  assert.notEqual(other, served);
  ({ page, problems } = await transparency());
  await page.locator('#log-warning').waitFor();
  assert.equal(await page.textContent('#log-warning'),
    `WARNING: the audit log key changed since this device pinned it. Pinned: ${served}. Served now: ${other}. This log is not the one this device saw before; do not trust it.`);
  await page.click('#lang');
  assert.match(await page.textContent('#log-warning'), /^ВНИМАНИЕ: ключ журнала аудита изменился/);
  await page.close();
  await wallet.reload();
  await wallet.locator('#log-warning').waitFor();
  assert.match(await wallet.textContent('#log-warning'), /ключ журнала аудита изменился/);
  assert.equal(await wallet.textContent('#log-key'), served);
  await wallet.click('#lang');
  assert.match(await wallet.textContent('#log-warning'), /^WARNING: the audit log key changed/);
  await shot(wallet, 'wallet-log-warning');
  assert.deepEqual(problems, []);
});
