// The three web faces in a real Chromium against a real `blindpass serve`.
// One server serves every scenario, in order: the later ones build on the
// pass the first obtains, and the last ends a period.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, launch, PHONE, watch, y4mFrom, freePort } from './harness.mjs';
import { decode as base45 } from '../src/lib/base45.js';

const PASSWORD = 'correct horse battery';
// A failing page makes a test wait on selectors; bound every test.
const TEST_TIMEOUT_MS = 180_000;
// Screenshots for docs/ are written when SCREENSHOTS names a directory.
const SHOTS = process.env.SCREENSHOTS;

let server;
let browser;
let passPng;
let payload;
const work = {};

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

async function walletPage(base = server.base, options = {}) {
  const context = await browser.newContext({ ...PHONE, locale: 'en-US', ...options });
  const page = await context.newPage();
  const problems = watch(page);
  await page.goto(`${base}/`);
  return { context, page, problems };
}

async function enrol(page, fields) {
  const values = {
    full_name: 'Ivan Petrov', date_of_birth: '1990-05-17', document_number: '4512345678',
    address: 'Tverskaya 1, Moscow', phone: '+74951234567', password: PASSWORD, ...fields,
  };
  for (const [name, value] of Object.entries(values)) await page.fill(`#enrol-form-${name}`, value);
  await page.click('#enrol-form button[type=submit]');
  await page.waitForFunction(() => {
    const form = document.getElementById('enrol-form');
    return !form.querySelector('button[type=submit]').disabled
      && (form.querySelector('.form-status').textContent || [...form.querySelectorAll('.field-error')].some((e) => e.textContent));
  });
}

async function login(page, documentNumber) {
  await page.fill('#login-form-document_number', documentNumber);
  await page.fill('#login-form-password', PASSWORD);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#account:not([hidden])');
}

/** Requests a pass; resolves to the request form's final status. */
async function requestPass(page, klass = 'personal') {
  await page.selectOption('#request-class', klass);
  await page.click('#request-submit');
  await page.waitForSelector('#request-status.ok, #request-status.error', { timeout: 60_000 });
  return { ok: await page.$eval('#request-status', (e) => e.classList.contains('ok')), text: await page.textContent('#request-status') };
}

function check(text) {
  try {
    return { code: 0, out: server.cli('verify', '--cache', 'verifier', 'check', ...text) };
  } catch (error) {
    return { code: error.status, out: `${error.stdout}${error.stderr}` };
  }
}

before(async () => {
  server = await startServer();
  browser = await launch();
  server.cli('verify', '--cache', 'verifier', 'sync', '--server', server.base);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('1: a resident enrols, requests a pass and sees its QR, which the CLI verifier accepts', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { page, problems } = await walletPage();
  const sent = [];
  page.on('request', (request) => sent.push({ url: request.url(), headers: JSON.stringify(request.headers()), body: request.postDataBuffer() }));
  await shot(page, 'wallet-enrol');
  await enrol(page, {});
  assert.match(await page.textContent('#enrol-form .form-status'), /Enrolled/);
  await login(page, '4512345678');
  const result = await requestPass(page);
  assert.ok(result.ok, result.text);
  assert.equal(await page.locator('#pass-list li').count(), 1);
  assert.match(await page.textContent('#pass-list li'), /Valid today/);
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot(page, 'wallet-passes');
  await page.click('#pass-list li button >> nth=0');
  await page.waitForSelector('#pass-view:not([hidden])');
  // The whole screen, as a person would photograph it.
  const screen = join(server.dir, 'screen.png');
  await page.screenshot({ path: screen });
  await shot(page, 'wallet-pass');
  // Printed, the pass takes one page, A4 or Letter.
  for (const format of ['A4', 'Letter']) {
    const pdf = (await page.pdf({ format })).toString('latin1');
    assert.equal(pdf.match(/\/Type\s*\/Page[^s]/g).length, 1, `${format}: one page`);
  }
  const verdict = check(['--image', screen]);
  assert.equal(verdict.code, 0, verdict.out);
  assert.match(verdict.out, /^VALID personal \d{4}-\d{2}-\d{2}/m);
  passPng = join(server.dir, 'pass.png');
  await page.locator('#pass-qr').screenshot({ path: passPng });
  payload = await page.evaluate(async () => {
    const db = await new Promise((resolve) => { const r = indexedDB.open('blindpass-wallet'); r.onsuccess = () => resolve(r.result); });
    return new Promise((resolve) => { const r = db.transaction('passes').objectStore('passes').getAll(); r.onsuccess = () => resolve(r.result[0].payload); });
  });
  assert.match(payload, /^BP1:/);
  // The issuer was sent the blinded message only: no request of the page
  // carries the pass, its nonce or its signature, and the session token
  // never appears in a URL.
  const token = Buffer.from(base45(payload.slice(4)));
  const nonce = token.subarray(2, 34);
  const signature = token.subarray(98);
  const session = await page.evaluate(() => sessionStorage.getItem('blindpass.session'));
  assert.ok(session);
  const tokenRequests = sent.filter((r) => new URL(r.url).pathname === '/token-request');
  assert.equal(tokenRequests.length, 1);
  assert.equal(tokenRequests[0].body.length, 259);
  for (const request of sent) {
    let decoded = request.url;
    try {
      decoded = decodeURIComponent(request.url.replace(/\+/g, ' '));
    } catch {
      // Not percent-encoded text: the raw URL is checked.
    }
    const text = `${request.url} ${decoded} ${request.headers}`;
    for (const secret of [payload.slice(4, 40), nonce.toString('hex'), nonce.toString('base64'), signature.toString('base64').slice(0, 40)]) {
      assert.ok(!text.includes(secret), `a request carries part of the pass: ${new URL(request.url).pathname}`);
    }
    if (request.body) {
      assert.ok(!request.body.includes(nonce) && !request.body.includes(signature.subarray(0, 32)), `${request.url} carries the token`);
      assert.ok(!request.body.toString('latin1').includes(payload.slice(4, 40)), `${request.url} carries the pass`);
    }
    assert.ok(!request.url.includes(session), 'the session token is in a URL');
  }
  assert.deepEqual(problems, []);

  // The pass opens with the network off: page from the service worker,
  // pass from IndexedDB.
  await page.evaluate(() => Promise.race([
    navigator.serviceWorker.ready,
    new Promise((_, reject) => setTimeout(() => reject(new Error('no service worker')), 10_000)),
  ]));
  await page.context().setOffline(true);
  await page.reload();
  await page.click('#pass-list li button >> nth=0');
  await page.waitForSelector('#pass-view:not([hidden])');
  const offline = join(server.dir, 'offline.png');
  await page.screenshot({ path: offline });
  assert.match(check(['--image', offline]).out, /^VALID personal/m);
  await page.context().close();
});

test('2: the verifier reads the pass from the fake camera: VALID; tampered and expired: INVALID with the reason', { timeout: TEST_TIMEOUT_MS }, async () => {
  const y4m = join(server.dir, 'pass.y4m');
  y4mFrom(passPng, y4m);
  const camera = await launch({ camera: y4m });
  try {
    const context = await camera.newContext({ ...PHONE, locale: 'en-US' });
    const page = await context.newPage();
    const problems = watch(page);
    await page.goto(`${server.base}/verify`);
    await page.waitForSelector('body.ready');
    assert.match(await page.textContent('#directory-status'), /Keys updated/);
    await shot(page, 'verifier');
    await page.click('#scan');
    await page.waitForSelector('#verdict:not([hidden])', { timeout: 30_000 });
    assert.equal(await page.getAttribute('#verdict', 'data-reason'), 'valid');
    assert.match(await page.textContent('#verdict-word'), /^VALID$/);
    assert.match(await page.textContent('#verdict-detail'), /^personal · \d{4}-\d{2}-\d{2}$/);
    const decode = await page.evaluate(() => performance.getEntriesByName('first-frame-decode')[0]?.duration);
    console.log(`first camera frame decoded in ${decode?.toFixed(1)} ms`);
    await shot(page, 'verifier-valid');
    await page.click('#verdict-next');

    // A picked picture of the pass reads the same.
    await page.setInputFiles('#file', passPng);
    await page.waitForSelector('#verdict:not([hidden])');
    assert.equal(await page.getAttribute('#verdict', 'data-reason'), 'valid');
    await page.click('#verdict-next');

    // Tampered: one character of the signature changed.
    const at = payload.length - 5;
    const tampered = payload.slice(0, at) + (payload[at] === 'A' ? 'B' : 'A') + payload.slice(at + 1);
    await page.fill('#payload', tampered);
    await page.click('#paste-form button[type=submit]');
    await page.waitForSelector('#verdict:not([hidden])');
    assert.equal(await page.getAttribute('#verdict', 'data-reason'), 'bad-signature');
    assert.match(await page.textContent('#verdict-word'), /^INVALID$/);
    assert.match(await page.textContent('#verdict-detail'), /altered or forged/);
    await shot(page, 'verifier-invalid');
    await page.click('#verdict-next');
    assert.deepEqual(problems, []);
    work.cameraContext = context;
    work.camera = camera;

    // Expired: the same camera, a verifier that synced its keys today and
    // whose clock is now three days on, with the issuer out of reach: it
    // says its keys are out of date, uses them, and refuses the pass.
    const laterContext = await camera.newContext({ ...PHONE, locale: 'en-US' });
    const later = await laterContext.newPage();
    await later.goto(`${server.base}/verify`);
    await later.waitForSelector('body.ready');
    await later.clock.setFixedTime(new Date(Date.now() + 3 * 86_400_000));
    await later.route('**/v1/directory', (route) => route.abort());
    await later.reload();
    await later.waitForSelector('body.ready');
    assert.match(await later.textContent('#directory-status'), /^Offline: using the saved keys\. Keys are out of date \(updated 3 d ago\)/);
    await later.click('#scan');
    await later.waitForSelector('#verdict:not([hidden])', { timeout: 30_000 });
    assert.equal(await later.getAttribute('#verdict', 'data-reason'), 'expired');
    assert.match(await later.textContent('#verdict-detail'), /^Expired: personal, \d{4}-\d{2}-\d{2}\.$/);
    await laterContext.close();
  } catch (error) {
    await camera.close();
    throw error;
  }
});

test('3: the verifier reloads and scans with the network off', { timeout: TEST_TIMEOUT_MS }, async () => {
  const context = work.cameraContext;
  assert.ok(context, 'needs the camera browser of test 2');
  try {
    const page = await context.newPage();
    await page.goto(`${server.base}/verify`);
    // The worker the page registered is active (bounded: a page that
    // registers none must fail here, not hang).
    await page.evaluate(() => Promise.race([
      navigator.serviceWorker.ready,
      new Promise((_, reject) => setTimeout(() => reject(new Error('no service worker')), 10_000)),
    ]));
    await context.setOffline(true);
    await page.reload();
    await page.waitForSelector('body.ready');
    assert.match(await page.textContent('#directory-status'), /Offline: using the saved keys/);
    await page.click('#scan');
    await page.waitForSelector('#verdict:not([hidden])', { timeout: 30_000 });
    assert.equal(await page.getAttribute('#verdict', 'data-reason'), 'valid');
  } finally {
    await work.camera.close();
  }
});

test('4: the wallet refuses a signing key that the log does not show, and says why', { timeout: TEST_TIMEOUT_MS }, async () => {
  // A proxy that serves the directory with tomorrow's personal key in
  // place of today's: a real key of this issuer, logged — for another window.
  const port = await freePort();
  const proxy = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = ['GET', 'HEAD'].includes(req.method) ? undefined : Buffer.concat(chunks);
    const headers = { ...req.headers };
    delete headers.host;
    const upstream = await fetch(`${server.base}${req.url}`, { method: req.method, headers, body });
    let bytes = Buffer.from(await upstream.arrayBuffer());
    if (req.url === '/v1/directory') {
      const directory = JSON.parse(bytes);
      const personal = directory.keys.filter((k) => k.class === 'personal').sort((a, b) => a.window.localeCompare(b.window));
      const [today, tomorrow] = personal;
      directory.keys = directory.keys.filter((k) => k !== tomorrow);
      today['token-key'] = tomorrow['token-key'];
      today['token-key-id'] = tomorrow['token-key-id'];
      bytes = Buffer.from(JSON.stringify(directory));
    }
    const out = Object.fromEntries([...upstream.headers].filter(([name]) => !['content-length', 'content-encoding', 'etag'].includes(name)));
    res.writeHead(upstream.status, out);
    res.end(bytes);
  });
  await new Promise((r) => proxy.listen(port, '127.0.0.1', r));
  try {
    const { page, context } = await walletPage(`http://127.0.0.1:${port}`);
    await login(page, '4512345678');
    const result = await requestPass(page);
    assert.equal(result.ok, false);
    assert.match(result.text, /^Refused: the issuer offered a signing key \([0-9a-f]{16}\) that its public audit log does not show for personal, \d{4}-\d{2}-\d{2}\./);
    await shot(page, 'wallet-refused');
    assert.equal(await page.locator('#pass-list li').count(), 0);
    await context.close();
  } finally {
    proxy.close();
  }
});

test('5: a duplicate document, an under-14 birth date and a used-up quota are shown where they belong, in both languages', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { page, problems } = await walletPage();
  await enrol(page, {});
  assert.equal(await page.textContent('#enrol-form-document_number-error'), 'This document is already enrolled.');
  assert.equal(await page.getAttribute('#enrol-form-document_number', 'aria-invalid'), 'true');
  await page.click('#lang');
  assert.equal(await page.textContent('#enrol-form-document_number-error'), 'Этот документ уже зарегистрирован.');
  await page.click('#lang');

  const child = new Date(Date.now() - 10 * 365 * 86_400_000).toISOString().slice(0, 10);
  await enrol(page, { document_number: 'CHILD1234', date_of_birth: child });
  assert.equal(await page.textContent('#enrol-form-date_of_birth-error'), 'You must be 14 or older.');
  assert.equal(await page.textContent('#enrol-form-document_number-error'), '');
  await page.click('#lang');
  assert.equal(await page.textContent('#enrol-form-date_of_birth-error'), 'Вам должно быть не меньше 14 лет.');
  await shot(page, 'wallet-errors-ru');
  await page.click('#lang');

  // Test 1 took one of the two personal passes of this week.
  await login(page, '4512345678');
  assert.ok((await requestPass(page)).ok);
  const third = await requestPass(page);
  assert.equal(third.ok, false);
  assert.equal(third.text, 'Weekly quota used up: no more passes of this kind this week.');
  await page.click('#lang');
  assert.equal(await page.textContent('#request-status'), 'Недельный лимит исчерпан: пропусков этого вида на этой неделе больше нет.');
  await page.click('#lang');

  // Erasing the enrolment ends the session; the document no longer logs in.
  page.once('dialog', (dialog) => dialog.accept());
  await page.click('#erase');
  await page.waitForSelector('#login:not([hidden])');
  assert.equal(await page.textContent('#login-form .form-status'), 'Your enrolment was erased.');
  await page.fill('#login-form-document_number', '4512345678');
  await page.fill('#login-form-password', PASSWORD);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#login-form .form-status.error');
  assert.equal(await page.textContent('#login-form .form-status'), 'Wrong document number or password.');
  assert.deepEqual(problems.filter((p) => !/status of 4\d\d/.test(p)), []);
});

test('6: the transparency page shows a period destroyed after `admin period end`', { timeout: TEST_TIMEOUT_MS }, async () => {
  const token = join(server.dataDir, 'admin.token');
  const ends = new Date(Date.now() + 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');
  const opened = JSON.parse(server.cli('admin', '--server', server.base, '--token-file', token, '--json', 'period', 'open', '--name', 'spring-lockdown', '--ends-at', ends, '--grace-s', '0'));
  server.cli('admin', '--server', server.base, '--token-file', token, 'period', 'end', opened.id);
  const context = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const page = await context.newPage();
  const problems = watch(page);
  await page.goto(`${server.base}/transparency`);
  await page.waitForSelector('body.ready');
  assert.match(await page.textContent('#summary'), /^Checkpoint signature verified; \d+ entries match the tree root\. First visit: this log key and checkpoint are now pinned on this device\.$/);
  const row = page.locator(`tr[data-period="${opened.id}"]`);
  assert.match(await row.textContent(), /spring-lockdown/);
  assert.equal(await row.getAttribute('class'), 'period destroyed');
  // Ended early: the end shown is when it was ended, with the planned end
  // beside it, and the deadline (no grace) is that moment, not a day later.
  const [end, deadline, destroyed, status] = await row.locator('td').allTextContents();
  const at = /^(.+ UTC), ended early \(planned: (.+ UTC)\)$/.exec(end);
  assert.ok(at, end);
  assert.equal(at[2], ends.replace('T', ' ').replace('Z', ' UTC'));
  assert.equal(deadline, at[1]);
  assert.match(destroyed, /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$/);
  assert.ok(destroyed >= deadline);
  assert.equal(status, 'Destroyed on time');
  assert.match(await page.textContent('#log-key'), /^blindpass\.local\/audit\+[0-9a-f]{8}\+/);
  assert.deepEqual(problems, []);
  await context.close();
});

/** Tabs (or shift-tabs) until `selector` has the focus; fails after `max`. */
async function tabTo(page, selector, { back = false, max = 40 } = {}) {
  for (let i = 0; i < max; i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s), selector)) return;
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
  }
  assert.fail(`Tab never reached ${selector}`);
}

/** What an offline look at the page finds missing for assistive technology. */
function accessibilityProblems(page) {
  return page.evaluate(() => {
    const problems = [];
    const name = (e) => (e.getAttribute('aria-label') || '').trim()
      || (e.getAttribute('aria-labelledby') || '').split(/\s+/).map((id) => document.getElementById(id)?.textContent.trim() ?? '').join('')
      || [...(e.labels ?? [])].map((l) => l.textContent.trim()).join('');
    for (const e of document.querySelectorAll('input, select, textarea')) {
      if (e.type !== 'hidden' && !name(e)) problems.push(`no label: ${e.id || e.name}`);
    }
    for (const e of document.querySelectorAll('button, a[href]')) {
      if (!(name(e) || e.textContent.trim())) problems.push(`no accessible name: ${e.outerHTML.slice(0, 60)}`);
      // What is seen must be part of what is heard (WCAG 2.5.3).
      const label = e.getAttribute('aria-label');
      if (label && e.textContent.trim() && !label.toLowerCase().includes(e.textContent.trim().toLowerCase())) {
        problems.push(`label does not contain the visible text: ${e.textContent.trim()}`);
      }
    }
    for (const e of document.querySelectorAll('[role=img], img, canvas')) {
      if (e.closest('[hidden]')) continue;
      if (!(e.getAttribute('aria-label') || e.getAttribute('alt') !== null)) problems.push(`image without text: ${e.id}`);
    }
    if (document.documentElement.lang !== document.documentElement.dataset.expected) {
      problems.push(`<html lang="${document.documentElement.lang}">`);
    }
    if (document.querySelectorAll('h1').length !== 1) problems.push('not one h1');
    return problems;
  });
}

test('7: the pages pass an offline accessibility check in both languages, and their headings and buttons fit a 360 px screen', { timeout: TEST_TIMEOUT_MS }, async () => {
  const context = await browser.newContext({ ...PHONE, locale: 'en-US' });
  const page = await context.newPage();
  const problems = watch(page);
  for (const path of ['/', '/verify', '/transparency']) {
    await page.goto(`${server.base}${path}`);
    await page.waitForLoadState('networkidle');
    for (const lang of ['en', 'ru']) {
      await page.evaluate((l) => { document.documentElement.dataset.expected = l; }, lang);
      assert.deepEqual(await accessibilityProblems(page), [], `${path} in ${lang}`);
      // Every heading of the page on one line.
      const wrapped = await page.evaluate(() => [...document.querySelectorAll('h1, h2')]
        .filter((h) => h.getClientRects().length > 0)
        .filter((h) => h.getBoundingClientRect().height > parseFloat(getComputedStyle(h).lineHeight) * 1.5)
        .map((h) => h.textContent));
      assert.deepEqual(wrapped, [], `${path} in ${lang}: headings on two lines`);
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), `${path} in ${lang}: scrolls sideways`);
      await page.click('#lang');
    }
  }
  assert.deepEqual(problems, []);
  await context.close();
});

test('8: keyboard only: enrol, log in, request a pass and show it with Tab and Enter; its state is read out; its buttons fit one row', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { page, problems, context } = await walletPage();
  const type = async (selector, text) => { await tabTo(page, selector); await page.keyboard.type(text); };
  await type('#enrol-form-full_name', 'Olga Keys');
  await type('#enrol-form-date_of_birth', '03141985');
  await type('#enrol-form-document_number', 'KEYS123456');
  await type('#enrol-form-address', 'Arbat 2, Moscow');
  await type('#enrol-form-phone', '+74957654321');
  await type('#enrol-form-password', PASSWORD);
  await tabTo(page, '#enrol-form button[type=submit]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#enrol-form .form-status.ok');
  assert.equal(await page.inputValue('#login-form-document_number'), 'KEYS123456');
  await type('#login-form-password', PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#account:not([hidden])');
  await tabTo(page, '#request-submit', { back: true });
  await page.keyboard.press('Enter');
  await page.waitForSelector('#request-status.ok', { timeout: 60_000 });
  await page.evaluate(() => { document.documentElement.dataset.expected = 'en'; });
  assert.deepEqual(await accessibilityProblems(page), [], 'with a pass listed');
  const show = '#pass-list li button:not(.secondary)';
  await tabTo(page, show, { back: true, max: 60 });
  // The pass's state is in what a screen reader says for its button.
  assert.match(await page.getAttribute(show, 'aria-label'), /^Show pass Personal \(one day, 2 a week\), \d{4}-\d{2}-\d{2}: Valid today$/);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#pass-view:not([hidden])');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'pass-close');
  assert.match(await page.getAttribute('#pass-qr', 'aria-label'), /Valid today$/);
  assert.deepEqual(await accessibilityProblems(page), [], 'with the pass shown');
  for (const lang of ['en', 'ru']) {
    const tops = await page.$$eval('#pass-view .row button', (buttons) => buttons.map((b) => Math.round(b.getBoundingClientRect().top)));
    assert.equal(new Set(tops).size, 1, `${lang}: the pass's buttons on one row (${tops})`);
    const inside = await page.$$eval('#pass-view .row button', (buttons) => buttons.every((b) => b.getBoundingClientRect().right <= window.innerWidth && b.scrollWidth <= b.clientWidth));
    assert.ok(inside, `${lang}: a button is cut off`);
    // The header (and its language button) is hidden behind the pass.
    await page.evaluate(() => document.getElementById('lang').click());
  }
  await page.keyboard.press('Enter');
  await page.waitForSelector('#pass-view', { state: 'hidden' });
  // Closing gives the focus back to the button that opened the pass.
  assert.ok(await page.evaluate((s) => document.activeElement.matches(s), show), 'the focus is not back on the pass');
  assert.deepEqual(problems, []);
  await context.close();
});
