// The offline check of a pass, in the order of `blindpass verify check`
// (src/verifier/): strict parse of the BP1: payload, a known key id, the
// issuer's permit challenge, the RSA-PSS signature (SHA-384, 48-byte salt:
// RSABSSA-SHA384-PSS-Deterministic), and a window that contains the clock
// widened by the skew. The first failure is the verdict.

import { convertRSASSAPSSToEnc } from '@cloudflare/privacypass-ts/lib/src/util.js';
import { TokenChallenge } from '@cloudflare/privacypass-ts/lib/src/auth_scheme/private_token.js';
import { decode as base45 } from './base45.js';
import { fromBase64, hex, sha256, equal } from './bytes.js';
import { parseWindow } from './window.js';

const TOKEN_TYPE = 2;
const TOKEN_LEN = 2 + 32 + 32 + 32 + 256;
const PREFIX = 'BP1:';
/** The CLI's default tolerance for a verifier's clock (`--skew-s`). */
export const SKEW_MS = 300_000;

/** Imports every key of a blindpass directory; refuses it whole if one is bad. */
export async function trustedKeys(directory) {
  const keys = new Map();
  for (const published of directory.keys) {
    const spki = fromBase64(published['token-key']);
    const id = hex(await sha256(spki));
    if (id !== published['token-key-id'] || keys.has(id) || !parseWindow(published.window)) {
      throw new Error('the key directory is not usable');
    }
    const key = await crypto.subtle.importKey('spki', convertRSASSAPSSToEnc(spki), { name: 'RSA-PSS', hash: 'SHA-384' }, false, ['verify']);
    keys.set(id, { key, class: published.class, window: published.window });
  }
  const challenge = new TokenChallenge(TOKEN_TYPE, directory['issuer-name'], new Uint8Array(0));
  return { keys, challengeDigest: await sha256(challenge.serialize()) };
}

/** `{ valid: true, class, window }` or `{ valid: false, reason, class?, window? }`. */
export async function check(trusted, payload, now = Date.now(), skewMs = SKEW_MS) {
  const text = payload.trim();
  if (!text.startsWith(PREFIX)) return { valid: false, reason: 'malformed' };
  let bytes;
  try {
    bytes = base45(text.slice(PREFIX.length));
  } catch {
    return { valid: false, reason: 'malformed' };
  }
  if (bytes.length !== TOKEN_LEN || ((bytes[0] << 8) | bytes[1]) !== TOKEN_TYPE) {
    return { valid: false, reason: 'malformed' };
  }
  const digest = bytes.slice(34, 66);
  const keyId = hex(bytes.slice(66, 98));
  const known = trusted.keys.get(keyId);
  if (!known) return { valid: false, reason: 'unknown-key' };
  if (!equal(digest, trusted.challengeDigest)) return { valid: false, reason: 'wrong-issuer' };
  const ok = await crypto.subtle.verify({ name: 'RSA-PSS', saltLength: 48 }, known.key, bytes.slice(98), bytes.slice(0, 98));
  if (!ok) return { valid: false, reason: 'bad-signature' };
  const window = parseWindow(known.window);
  const seen = { class: known.class, window: known.window };
  if (now >= window.start - skewMs && now < window.end + skewMs) return { valid: true, ...seen };
  if (now < window.start) return { valid: false, reason: 'not-yet-valid', ...seen };
  return { valid: false, reason: 'expired', ...seen };
}
