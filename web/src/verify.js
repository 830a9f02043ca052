// The verifier: keeps the key directory (synced when online, used stale
// when not, and says which), reads a pass from the camera, a picture or
// pasted text, checks it offline, and shows the answer full-screen. It
// keeps no record of what it scanned.

import { prepareZXingModule, readBarcodes } from 'zxing-wasm/reader';
import { getJson } from './lib/api.js';
import { check, trustedKeys } from './lib/check.js';
import { t, setup as setupI18n, onChange, has } from './lib/i18n.js';
import { registerWorker } from './lib/worker.js';

const DIRECTORY = 'blindpass.verifier.directory';
const $ = (id) => document.getElementById(id);

// The QR reader's wasm comes from this issuer, never from a CDN.
prepareZXingModule({
  overrides: { locateFile: (path, prefix) => (path.endsWith('.wasm') ? '/assets/zxing_reader.wasm' : prefix + path) },
});

const READER = { formats: ['QRCode'], tryHarder: true, maxNumberOfSymbols: 1 };

let trusted = null;
let saved = null;
let offline = false;

function ageText(ms) {
  const minutes = Math.round(ms / 60_000);
  if (minutes < 120) return `${minutes} min`;
  const hours = Math.round(minutes / 60);
  return hours < 48 ? `${hours} h` : `${Math.round(hours / 24)} d`;
}

function renderDirectory() {
  const status = $('directory-status');
  if (!saved) {
    status.textContent = t('verify.directory.none');
    status.className = 'directory stale';
    return;
  }
  const age = Date.now() - saved.fetchedAt;
  const stale = age > saved.directory['max-age-s'] * 1000;
  const parts = [];
  if (offline) parts.push(t('verify.directory.offline'));
  parts.push(t(stale ? 'verify.directory.stale' : 'verify.directory.age', { age: ageText(age), count: saved.directory.keys.length }));
  status.textContent = parts.join(' ');
  status.className = `directory ${stale ? 'stale' : 'fresh'}`;
}

async function loadDirectory() {
  saved = JSON.parse(localStorage.getItem(DIRECTORY) || 'null');
  try {
    const directory = await getJson('/v1/directory');
    const keys = await trustedKeys(directory);
    saved = { directory, fetchedAt: Date.now() };
    localStorage.setItem(DIRECTORY, JSON.stringify(saved));
    trusted = keys;
    offline = false;
  } catch {
    offline = true;
    trusted = saved ? await trustedKeys(saved.directory) : null;
  }
  renderDirectory();
}

let lastVerdict = null;

function showVerdict(verdict) {
  lastVerdict = verdict;
  const view = $('verdict');
  view.className = `verdict ${verdict.valid ? 'valid' : 'invalid'}`;
  $('verdict-word').textContent = t(verdict.valid ? 'verify.valid' : 'verify.invalid');
  if (verdict.valid) {
    $('verdict-detail').textContent = `${verdict.class} · ${verdict.window}`;
  } else {
    const key = `reason.${verdict.reason}`;
    $('verdict-detail').textContent = has(key) ? t(key, verdict) : verdict.reason;
  }
  view.dataset.reason = verdict.valid ? 'valid' : verdict.reason;
  view.hidden = false;
  $('verdict-next').focus();
}

function hideVerdict() {
  lastVerdict = null;
  $('verdict').hidden = true;
}

async function verdictFor(payload) {
  if (!trusted) return { valid: false, reason: 'unknown-key' };
  return check(trusted, payload);
}

// --- camera ---------------------------------------------------------------

let stream = null;
let firstFrame = true;

async function startCamera() {
  $('camera-error').textContent = '';
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
  } catch (error) {
    $('camera-error').textContent = t('verify.camera-error', { detail: error.name });
    return;
  }
  const video = $('video');
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  $('scan').hidden = true;
  $('stop').hidden = false;
  firstFrame = true;
  requestAnimationFrame(scanFrame);
}

function stopCamera() {
  stream?.getTracks().forEach((track) => track.stop());
  stream = null;
  $('video').srcObject = null;
  $('video').hidden = true;
  $('scan').hidden = false;
  $('stop').hidden = true;
}

function frameData(source, width, height) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(source, 0, 0, width, height);
  return ctx.getImageData(0, 0, width, height);
}

async function scanFrame() {
  if (!stream) return;
  const video = $('video');
  if (video.videoWidth > 0) {
    const data = frameData(video, video.videoWidth, video.videoHeight);
    const started = performance.now();
    const results = await readBarcodes(data, READER);
    if (firstFrame) {
      // The decode time of the first camera frame (wasm start-up included).
      performance.measure('first-frame-decode', { start: started, end: performance.now() });
      firstFrame = false;
    }
    const found = results.find((r) => r.isValid);
    if (found) {
      stopCamera();
      showVerdict(await verdictFor(found.text));
      return;
    }
  }
  requestAnimationFrame(scanFrame);
}

async function readFile(file) {
  $('camera-error').textContent = '';
  const bitmap = await createImageBitmap(file);
  const results = await readBarcodes(frameData(bitmap, bitmap.width, bitmap.height), READER);
  bitmap.close();
  const found = results.find((r) => r.isValid);
  if (!found) {
    $('camera-error').textContent = t('verify.no-code');
    return;
  }
  showVerdict(await verdictFor(found.text));
}

function main() {
  setupI18n();
  onChange(() => {
    renderDirectory();
    if (lastVerdict) showVerdict(lastVerdict);
  });
  $('scan').addEventListener('click', startCamera);
  $('stop').addEventListener('click', stopCamera);
  $('sync').addEventListener('click', loadDirectory);
  $('file').addEventListener('change', (e) => {
    const [file] = e.target.files;
    e.target.value = '';
    if (file) readFile(file);
  });
  $('paste-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const field = e.target.elements.payload;
    const payload = field.value;
    field.value = '';
    showVerdict(await verdictFor(payload));
  });
  $('verdict-next').addEventListener('click', hideVerdict);
  loadDirectory().then(() => document.body.classList.add('ready'));
  registerWorker();
}

main();
