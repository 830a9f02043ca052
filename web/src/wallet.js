// The resident wallet: enrol, log in, request a pass blinded in this
// browser, keep passes on the device, show one as a large QR.
//
// The issuer never sees the token: the nonce, the blinding and the
// unblinding happen here, with Cloudflare's Privacy Pass client
// (@cloudflare/privacypass-ts over @cloudflare/blindrsa-ts). Before
// blinding, the key is checked against the issuer's signed audit log, as
// the CLI wallet does: a key the log does not publish for that class and
// window could single this resident out.

import { Client, BlindRSAMode } from '@cloudflare/privacypass-ts/lib/src/pub_verif_token.js';
import { TokenChallenge } from '@cloudflare/privacypass-ts/lib/src/auth_scheme/private_token.js';
import { ProblemError, getJson, request } from './lib/api.js';
import { encode as base45 } from './lib/base45.js';
import { fromBase64, hex, sha256 } from './lib/bytes.js';
import { t, setup as setupI18n, onChange, has } from './lib/i18n.js';
import { isTampering, keyProblem, pinned, pinnedLog, LogError } from './lib/log.js';
import * as passes from './lib/passes.js';
import { draw } from './lib/qr.js';
import { containing, parseWindow, timeState, today } from './lib/window.js';
import { registerWorker } from './lib/worker.js';

const TOKEN_TYPE = 2;
const SESSION = 'blindpass.session';

const $ = (id) => document.getElementById(id);

// The session token lives in this tab's session storage: never in a URL,
// gone when the tab closes.
function session() {
  return sessionStorage.getItem(SESSION);
}

function showScreen() {
  const loggedIn = Boolean(session());
  $('enrol').hidden = loggedIn;
  $('login').hidden = loggedIn;
  $('account').hidden = !loggedIn;
}

function clearErrors(form) {
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  const status = form.querySelector('.form-status');
  if (status) { status.textContent = ''; status.className = 'form-status'; }
}

function problemText(error) {
  if (error instanceof ProblemError) {
    const key = `problem.${error.type}`;
    if (has(key)) return t(key);
    return t('problem.other', { detail: error.problem.title || error.status });
  }
  return t('problem.other', { detail: error.message });
}

/** Puts an API error next to the field it names, or on the form. */
function showError(form, error) {
  if (error instanceof ProblemError) {
    let field = error.type === 'invalid-input' ? error.field() : null;
    let text;
    if (error.type === 'duplicate-document') {
      field = 'document_number';
      text = t('problem.duplicate-document');
    } else if (field) {
      const ruleKey = `rule.${error.rule()}`;
      text = has(ruleKey) ? t(ruleKey) : t('rule.other', { rule: error.rule() });
    }
    const input = field && form.querySelector(`[name="${field}"]`);
    const slot = field && form.querySelector(`#${form.id}-${field}-error`);
    if (input && slot) {
      input.setAttribute('aria-invalid', 'true');
      slot.textContent = text;
      input.focus();
      return;
    }
  }
  setStatus(form, problemText(error), 'error');
}

function setStatus(form, text, kind) {
  const status = form.querySelector('.form-status');
  status.textContent = text;
  status.className = `form-status ${kind}`;
}

// The last message of each form, re-rendered when the language changes.
const lastError = new Map();

async function guarded(form, action) {
  clearErrors(form);
  lastError.delete(form);
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    lastError.set(form, error);
    showError(form, error);
    if (error instanceof ProblemError && error.status === 401 && session()) {
      sessionStorage.removeItem(SESSION);
      showScreen();
    }
  } finally {
    button.disabled = false;
  }
}

async function enrol(form) {
  const data = Object.fromEntries(new FormData(form));
  if (!data.employer_tax_number) delete data.employer_tax_number;
  await request('POST', '/v1/residents', { json: data });
  form.reset();
  $('login').querySelector('[name=document_number]').value = data.document_number;
  setStatus(form, t('enrol.done'), 'ok');
  lastError.set(form, { ok: 'enrol.done' });
}

async function login(form) {
  const data = Object.fromEntries(new FormData(form));
  const response = await request('POST', '/v1/sessions', { json: data });
  const answer = await response.json();
  sessionStorage.setItem(SESSION, answer.session_token);
  form.reset();
  showScreen();
}

async function logout() {
  const token = session();
  sessionStorage.removeItem(SESSION);
  showScreen();
  try {
    await request('DELETE', '/v1/sessions', { token });
  } catch {
    // Forgotten here either way; the server lets it expire.
  }
}

async function erase() {
  if (!window.confirm(t('erase.confirm'))) return;
  const form = $('request-form');
  await guarded(form, async () => {
    await request('DELETE', '/v1/residents/me', { token: session() });
    sessionStorage.removeItem(SESSION);
    showScreen();
    setStatus($('login-form'), t('erase.done'), 'ok');
  });
}

class KeyRefused extends Error {
  constructor(key, params) {
    super(key);
    this.key = key;
    this.params = params;
  }
}

// A log that is not the one this device pinned (another key, history
// rewritten): shown in red at the top of the page until the device's data
// is cleared, and no pass is requested against it.
let tampering = null;

function tamperingText(error) {
  switch (error.code) {
    case 'key-changed': return t('pin.key-changed', { pinned: error.pinned, served: error.served });
    case 'origin-changed': return t('pin.origin-changed', { detail: error.message });
    case 'rolled-back': return t('pin.rolled-back', { size: error.pinnedSize });
    default: return t('pin.forked', { size: error.pinnedSize });
  }
}

function renderWarning() {
  const warning = $('log-warning');
  warning.hidden = !tampering;
  warning.textContent = tampering ? tamperingText(tampering) : '';
}

/** The log, checked against this device's pins (pinning on first use). */
async function checkedLog() {
  try {
    const { log } = await pinnedLog();
    return log;
  } catch (error) {
    if (isTampering(error)) {
      tampering = error;
      renderWarning();
    }
    throw error;
  } finally {
    renderLogKey();
  }
}

/** On each visit with the issuer in reach: pin, or check against the pins. */
async function checkLogOnVisit() {
  try {
    await checkedLog();
  } catch {
    // Offline or a failed check: a tampered log is shown by checkedLog; any
    // other failure is reported when a pass is requested.
  }
}

/** The one published key for the class and window, checked in the log. */
async function checkedKey(directory, klass, window) {
  const keys = directory.keys.filter((k) => k.class === klass && k.window === window);
  if (keys.length !== 1) throw new KeyRefused(keys.length ? 'key.split' : 'key.none', { class: klass, window });
  const [published] = keys;
  const spki = fromBase64(published['token-key']);
  if (hex(await sha256(spki)) !== published['token-key-id']) throw new KeyRefused('key.mismatch', {});
  let log;
  try {
    log = await checkedLog();
  } catch (error) {
    if (error instanceof LogError) throw new KeyRefused('log.failed', { detail: error.message });
    throw error;
  }
  const problem = keyProblem(log.entries, published['token-key-id'], klass, window);
  if (problem) {
    throw new KeyRefused(`key.${problem}`, { key: published['token-key-id'].slice(0, 16), class: klass, window });
  }
  return { spki, keyId: published['token-key-id'] };
}

async function requestPass(form) {
  const klass = form.elements.class.value;
  const date = form.elements.date.value || today();
  setStatus(form, t('request.working'), 'working');
  const directory = await getJson('/v1/directory');
  const sample = directory.keys.find((k) => k.class === klass);
  const kind = sample ? parseWindow(sample.window).kind : 'day';
  const window = containing(kind, date);
  const { spki, keyId } = await checkedKey(directory, klass, window);
  const challenge = new TokenChallenge(TOKEN_TYPE, directory['issuer-name'], new Uint8Array(0));
  const client = new Client(BlindRSAMode.PSS);
  const tokenRequest = await client.createTokenRequest(challenge, spki);
  const query = new URLSearchParams({ class: klass, window });
  const response = await request('POST', `/token-request?${query}`, {
    body: tokenRequest.serialize(),
    contentType: 'application/private-token-request',
    token: session(),
  });
  const bytes = new Uint8Array(await response.arrayBuffer());
  // finalize unblinds and verifies the signature under the checked key.
  const token = await client.finalize(client.deserializeTokenResponse(bytes));
  const payload = `BP1:${base45(token.serialize())}`;
  await passes.add({ payload, class: klass, window, keyId, obtainedAt: new Date().toISOString() });
  setStatus(form, t('request.done'), 'ok');
  lastError.set(form, { ok: 'request.done' });
  await renderPasses();
}

function className(klass) {
  const key = `class.${klass}`;
  return has(key) ? t(key) : klass;
}

// Renders may overlap (a language switch while a pass is added); only the
// latest one is drawn.
let renderGeneration = 0;

async function renderPasses() {
  const generation = ++renderGeneration;
  const all = (await passes.all()).sort((a, b) => a.window.localeCompare(b.window));
  if (generation !== renderGeneration) return;
  const list = $('pass-list');
  const items = [];
  $('passes-none').hidden = all.length > 0;
  for (const pass of all) {
    const state = timeState(pass.window);
    const item = document.createElement('li');
    item.className = `pass ${state}`;
    const label = document.createElement('span');
    label.className = 'pass-label';
    label.textContent = `${className(pass.class)} · ${pass.window}`;
    const badge = document.createElement('span');
    badge.className = `badge ${state}`;
    badge.textContent = t(`pass.state.${state}`);
    const show = document.createElement('button');
    show.type = 'button';
    show.textContent = t('pass.show');
    show.dataset.pass = pass.id;
    // The accessible name starts with the visible word, then says which
    // pass and its state (WCAG 2.5.3: what is seen is part of what is heard).
    show.setAttribute('aria-label', t('pass.show.label', { class: className(pass.class), window: pass.window, state: t(`pass.state.${state}`) }));
    show.addEventListener('click', () => openPass(pass));
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'secondary';
    del.textContent = t('pass.delete');
    del.setAttribute('aria-label', t('pass.delete.label', { class: className(pass.class), window: pass.window }));
    del.addEventListener('click', async () => { await passes.remove(pass.id); await renderPasses(); });
    item.append(label, badge, show, del);
    items.push(item);
  }
  // One replacement, and a keyboard user keeps the focus on the same pass.
  const focused = list.contains(document.activeElement) ? document.activeElement : null;
  list.replaceChildren(...items);
  if (focused?.dataset.pass) list.querySelector(`button[data-pass="${focused.dataset.pass}"]`)?.focus();
}

let shown = null;

function openPass(pass) {
  shown = pass;
  const view = $('pass-view');
  const state = timeState(pass.window);
  const side = Math.min(window.innerWidth, window.innerHeight - 140, 900);
  const ratio = window.devicePixelRatio || 1;
  const canvas = $('pass-qr');
  draw(canvas, pass.payload, side * ratio);
  // Whole device pixels per module: a sharp code at any size.
  canvas.style.width = canvas.style.height = `${canvas.width / ratio}px`;
  $('pass-class').textContent = className(pass.class);
  $('pass-window').textContent = pass.window;
  const badge = $('pass-state');
  badge.textContent = t(`pass.state.${state}`);
  badge.className = `badge ${state}`;
  $('pass-qr').setAttribute('aria-label', t('pass.sr', { class: className(pass.class), window: pass.window, state: t(`pass.state.${state}`) }));
  document.body.classList.add('showing-pass');
  view.hidden = false;
  $('pass-close').focus();
}

function closePass() {
  const closed = shown;
  shown = null;
  $('pass-view').hidden = true;
  document.body.classList.remove('showing-pass');
  // The focus goes back to the button that opened the pass.
  document.querySelector(`#pass-list button[data-pass="${closed?.id}"]`)?.focus();
}

function savePicture() {
  $('pass-qr').toBlob((blob) => {
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = `pass-${shown.class}-${shown.window}.png`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  });
}

function renderLogKey() {
  $('log-key').textContent = pinned().key || t('logkey.none');
}

let classes = [];

/** The classes the issuer publishes keys for, in the request form. */
async function fillClasses() {
  try {
    const directory = await getJson('/v1/directory');
    classes = [...new Set(directory.keys.map((k) => k.class))].sort();
  } catch {
    return;
  }
  renderClasses();
}

function renderClasses() {
  const select = $('request-form').elements.class;
  const chosen = select.value;
  select.replaceChildren(...classes.map((klass) => new Option(className(klass), klass)));
  if (classes.includes(chosen)) select.value = chosen;
}

function rerender() {
  renderClasses();
  renderLogKey();
  renderWarning();
  renderPasses();
  for (const [form, error] of lastError) {
    clearErrors(form);
    if (error.ok) setStatus(form, t(error.ok), 'ok');
    else if (error instanceof KeyRefused) setStatus(form, t(error.key, error.params), 'error');
    else showError(form, error);
  }
  if (shown) openPass(shown);
}

function main() {
  setupI18n();
  onChange(rerender);
  $('enrol-form').addEventListener('submit', (e) => { e.preventDefault(); guarded(e.target, () => enrol(e.target)); });
  $('login-form').addEventListener('submit', (e) => { e.preventDefault(); guarded(e.target, () => login(e.target)); });
  $('request-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.target;
    guarded(form, async () => {
      try {
        await requestPass(form);
      } catch (error) {
        if (error instanceof KeyRefused) {
          lastError.set(form, error);
          setStatus(form, t(error.key, error.params), 'error');
          return;
        }
        throw error;
      }
    });
  });
  $('request-form').elements.date.value = today();
  fillClasses();
  $('logout').addEventListener('click', logout);
  $('erase').addEventListener('click', erase);
  $('pass-close').addEventListener('click', closePass);
  $('pass-print').addEventListener('click', () => window.print());
  $('pass-save').addEventListener('click', savePicture);
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && shown) closePass(); });
  showScreen();
  renderLogKey();
  renderPasses();
  registerWorker();
  checkLogOnVisit();
}

main();
