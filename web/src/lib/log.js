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
    if (checkpoint.size < saved.size) throw new LogError('rolled-back', 'the log shrank');
    if (toBase64(await rootOf(leaves.slice(0, saved.size))) !== saved.root) {
      throw new LogError('forked', 'the log was rewritten');
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

/** Periods as the log tells them: opened, deadlines, ended, destroyed. */
export function periods(entries) {
  const byId = new Map();
  const of = (id) => {
    if (!byId.has(id)) byId.set(id, { id, name: null, endsAt: null, deadline: null, ended: null, destroyed: null, lateByS: null, purged: null });
    return byId.get(id);
  };
  for (const { at, event } of entries) {
    switch (event.kind) {
      case 'period-opened':
        Object.assign(of(event.period), { name: event.name, openedAt: at, endsAt: event.ends_at, deadline: event.deadline });
        break;
      case 'period-extended':
        Object.assign(of(event.period), { endsAt: event.ends_at, deadline: event.deadline });
        break;
      case 'period-ended':
        of(event.period).ended = at;
        break;
      case 'period-key-destroyed':
        Object.assign(of(event.period), { destroyed: at, deadline: event.deadline, lateByS: event.late_by_s });
        break;
      case 'records-purged':
        of(event.period).purged = event.entries;
        break;
      default:
        break;
    }
  }
  return [...byId.values()];
}
