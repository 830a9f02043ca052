// The issuer's public audit log (C2SP tlog-tiles with a signed-note
// checkpoint), fetched and checked in the browser as `blindpass audit`
// and the CLI wallet do (src/auditor/log.rs): the checkpoint's Ed25519
// signature under the pinned log key, the entry count, and the Merkle root
// (RFC 6962) rebuilt from every entry.

import { concat, fromBase64, hex, sha256, toBase64, equal } from './bytes.js';
import { getBytes, getText } from './api.js';

const TILE_WIDTH = 256;
const utf8 = new TextEncoder();

export class LogError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Parses `<name>+<hex id>+<base64(0x01 ‖ ed25519 key)>` and checks the id. */
export async function parseLogKey(text) {
  // The name and the id hold no '+'; the base64 key may.
  const match = /^([^+\s]+)\+([^+\s]+)\+(\S+)$/.exec(text.trim());
  if (!match) throw new LogError('bad-log-key', 'not a log key');
  const [, name, id, key64] = match;
  let raw;
  try {
    raw = fromBase64(key64);
  } catch {
    throw new LogError('bad-log-key', 'not a log key');
  }
  if (raw.length !== 33 || raw[0] !== 1 || !/^[0-9a-f]{8}$/.test(id)) {
    throw new LogError('bad-log-key', 'not an Ed25519 log key');
  }
  const keyHash = (await sha256(concat(utf8.encode(`${name}\n`), raw))).slice(0, 4);
  if (hex(keyHash) !== id) throw new LogError('bad-log-key', 'log key id does not match');
  const key = await crypto.subtle.importKey('raw', raw.slice(1), { name: 'Ed25519' }, false, ['verify']);
  return { name, keyHash, key, text: text.trim() };
}

/** Verifies a signed note; returns the checkpoint it carries. */
export async function verifyCheckpoint(note, logKey) {
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new LogError('malformed', 'checkpoint is not a signed note');
  const body = note.slice(0, split + 1);
  const signatures = note.slice(split + 2).split('\n').filter((l) => l.length > 0);
  let signed = false;
  for (const line of signatures) {
    const match = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!match || match[1] !== logKey.name) continue;
    const blob = fromBase64(match[2]);
    if (blob.length !== 68 || !equal(blob.slice(0, 4), logKey.keyHash)) continue;
    signed = await crypto.subtle.verify({ name: 'Ed25519' }, logKey.key, blob.slice(4), utf8.encode(body));
    if (signed) break;
  }
  if (!signed) throw new LogError('bad-signature', 'checkpoint signature does not verify');
  const lines = body.split('\n');
  const size = Number(lines[1]);
  if (!Number.isSafeInteger(size) || size < 0 || !/^\d+$/.test(lines[1])) {
    throw new LogError('malformed', 'checkpoint size');
  }
  return { origin: lines[0], size, root: fromBase64(lines[2]) };
}

/** `N` of a tile path, in groups of three digits: 1234 → x001/234. */
export function indexPath(n) {
  let path = String(n % 1000).padStart(3, '0');
  n = Math.floor(n / 1000);
  while (n > 0) {
    path = `x${String(n % 1000).padStart(3, '0')}/${path}`;
    n = Math.floor(n / 1000);
  }
  return path;
}

function decodeBundle(bytes) {
  const entries = [];
  let at = 0;
  while (at < bytes.length) {
    if (at + 2 > bytes.length) throw new LogError('malformed', 'entry bundle');
    const length = (bytes[at] << 8) | bytes[at + 1];
    at += 2;
    if (at + length > bytes.length) throw new LogError('malformed', 'entry bundle');
    entries.push(bytes.slice(at, at + length));
    at += length;
  }
  return entries;
}

async function leafHash(entry) {
  return sha256(concat(new Uint8Array([0]), entry));
}

async function nodeHash(left, right) {
  return sha256(concat(new Uint8Array([1]), left, right));
}

/** RFC 6962 Merkle tree hash of leaf hashes. */
export async function rootOf(leaves) {
  if (leaves.length === 0) return sha256(new Uint8Array(0));
  if (leaves.length === 1) return leaves[0];
  let split = 1;
  while (split * 2 < leaves.length) split *= 2;
  return nodeHash(await rootOf(leaves.slice(0, split)), await rootOf(leaves.slice(split)));
}

/**
 * Fetches the checkpoint and every entry, and proves the entries are the
 * ones the signed checkpoint commits to. `saved` (size and base64 root of a
 * checkpoint verified before) must be a prefix of this log.
 */
export async function fetchLog(logKey, saved) {
  const note = await getText('/audit/checkpoint');
  const checkpoint = await verifyCheckpoint(note, logKey);
  if (saved?.origin && saved.origin !== checkpoint.origin) {
    throw new LogError('origin-changed', `the log is now "${checkpoint.origin}", not "${saved.origin}"`);
  }
  const raw = [];
  for (let bundle = 0; raw.length < checkpoint.size; bundle++) {
    const width = Math.min(checkpoint.size - bundle * TILE_WIDTH, TILE_WIDTH);
    const path = width === TILE_WIDTH
      ? `/audit/tile/entries/${indexPath(bundle)}`
      : `/audit/tile/entries/${indexPath(bundle)}.p/${width}`;
    const decoded = decodeBundle(await getBytes(path));
    if (decoded.length !== width) throw new LogError('mismatch', 'entries do not match the checkpoint');
    raw.push(...decoded);
  }
  const leaves = await Promise.all(raw.map(leafHash));
  if (!equal(await rootOf(leaves), checkpoint.root)) {
    throw new LogError('mismatch', 'entries do not match the checkpoint');
  }
  if (saved) {
    if (checkpoint.size < saved.size) {
      throw Object.assign(new LogError('rolled-back', 'the log shrank'), { pinnedSize: saved.size });
    }
    // The pinned root, recomputed at its size from today's entries: if the
    // first `saved.size` entries are not the ones seen then, history was
    // rewritten.
    if (toBase64(await rootOf(leaves.slice(0, saved.size))) !== saved.root) {
      throw Object.assign(new LogError('forked', 'the log was rewritten'), { pinnedSize: saved.size });
    }
  }
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const entries = raw.map((bytes, index) => {
    let entry;
    try {
      entry = JSON.parse(decoder.decode(bytes));
    } catch {
      throw new LogError('malformed', `entry ${index} is not an audit entry`);
    }
    if (entry.seq !== index || typeof entry.event?.kind !== 'string') {
      throw new LogError('malformed', `entry ${index} is out of place`);
    }
    return entry;
  });
  return { origin: checkpoint.origin, size: checkpoint.size, root: toBase64(checkpoint.root), entries };
}

export const PINNED_KEY = 'blindpass.logKey';
export const PINNED_CHECKPOINT = 'blindpass.checkpoint';

/** The log key and checkpoint this device pinned (shared by the pages of one origin). */
export function pinned() {
  let checkpoint = null;
  try {
    checkpoint = JSON.parse(localStorage.getItem(PINNED_CHECKPOINT) || 'null');
  } catch {
    // An unreadable pin is treated as none; the key pin still holds.
  }
  return { key: localStorage.getItem(PINNED_KEY), checkpoint };
}

/**
 * Fetches the log and checks it against what this device pinned: the log
 * key is pinned on first use and must not change (`key-changed`); the
 * checkpoint keeps its origin, and the one pinned before is a prefix of
 * this log (`rolled-back`, `forked`). A log that passes becomes the pinned
 * checkpoint; one that fails leaves the pins as they were, so the warning
 * stays until the device's data is cleared. Returns the log, the key text
 * whether the key was pinned just now, and the size pinned before.
 */
export async function pinnedLog() {
  const served = (await getText('/audit/key')).trim();
  const pins = pinned();
  const firstUse = !pins.key;
  if (firstUse) {
    await parseLogKey(served);
    localStorage.setItem(PINNED_KEY, served);
  } else if (pins.key !== served) {
    const error = new LogError('key-changed', 'the log key changed');
    error.pinned = pins.key;
    error.served = served;
    throw error;
  }
  const keyText = firstUse ? served : pins.key;
  const log = await fetchLog(await parseLogKey(keyText), pins.checkpoint);
  localStorage.setItem(PINNED_CHECKPOINT, JSON.stringify({ origin: log.origin, size: log.size, root: log.root }));
  return { log, keyText, firstUse, pinnedSize: pins.checkpoint?.size ?? null };
}

/** Whether a log failure means the log is not the one this device saw. */
export function isTampering(error) {
  return error instanceof LogError && ['key-changed', 'origin-changed', 'rolled-back', 'forked'].includes(error.code);
}

/**
 * The key-consistency check of the CLI wallet (`key_logged`): the log
 * publishes `keyId` for this class and window, and no other key for them.
 * Returns null when it holds, else `not-logged` or `split`.
 */
export function keyProblem(entries, keyId, klass, window) {
  const ids = new Set();
  for (const { event } of entries) {
    if (event.kind === 'signing-key-published' && event.class === klass && event.window === window) {
      ids.add(event.key_id);
    }
  }
  if (!ids.has(keyId)) return 'not-logged';
  if (ids.size > 1) return 'split';
  return null;
}

/**
 * An RFC 3339 time from the log as nanoseconds since the epoch (BigInt):
 * the log writes nanoseconds, which a Date would round away.
 */
export function instant(text) {
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(text ?? '');
  if (!match) throw new LogError('malformed', `not a time: ${text}`);
  const seconds = Date.parse(`${match[1]}${match[3]}`);
  if (Number.isNaN(seconds)) throw new LogError('malformed', `not a time: ${text}`);
  return BigInt(seconds) * 1_000_000n + BigInt((match[2] ?? '').padEnd(9, '0'));
}

const NS = 1_000_000_000n;

/**
 * Periods as the log tells them, computed as `blindpass audit` does
 * (src/auditor/periods.rs): the grace between end and deadline is fixed
 * when a period opens or is extended; an early end (`period-ended`) moves
 * the end to that moment and the deadline to it plus the grace. A
 * destruction is on time when it is at most the deadline, to the whole
 * second as the auditor counts; a destruction entry whose deadline or
 * lateness disagrees with the one the log announced is `misreported`.
 */
export function periods(entries) {
  const byId = new Map();
  const of = (id) => {
    if (!byId.has(id)) {
      byId.set(id, {
        id, name: null, plannedEnd: null, endsAt: null, deadline: null, deadlineNs: null, grace: null,
        endedEarly: null, destroyed: null, lateByS: null, misreported: false, purged: null,
      });
    }
    return byId.get(id);
  };
  for (const { at, event } of entries) {
    const period = event.period === undefined ? null : of(event.period);
    switch (event.kind) {
      case 'period-opened':
      case 'period-extended':
        Object.assign(period, {
          endsAt: event.ends_at, plannedEnd: event.ends_at, deadline: event.deadline, deadlineNs: instant(event.deadline),
        });
        if (event.name !== undefined) period.name = event.name;
        period.grace = instant(event.deadline) - instant(event.ends_at);
        break;
      case 'period-ended': {
        period.endedEarly = at;
        period.endsAt = at;
        const deadline = instant(at) + (period.grace ?? 0n);
        period.deadline = new Date(Number(deadline / 1_000_000n)).toISOString().replace(/\.\d+Z$/, 'Z');
        period.deadlineNs = deadline;
        break;
      }
      case 'period-key-destroyed': {
        if (period.destroyed) break;
        const deadline = period.deadlineNs ?? instant(event.deadline);
        const late = instant(at) - deadline;
        period.destroyed = at;
        period.lateByS = late > 0n ? Number(late / NS) : 0;
        period.misreported = instant(event.deadline) / NS !== deadline / NS || event.late_by_s !== period.lateByS;
        if (!period.deadline) period.deadline = event.deadline;
        break;
      }
      case 'records-purged':
        period.purged = (period.purged ?? 0) + event.entries;
        break;
      default:
        break;
    }
  }
  return [...byId.values()];
}
