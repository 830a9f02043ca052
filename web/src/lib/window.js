// Validity windows as the issuer writes them: `2026-12-01` (a UTC day) or
// `2026-W49` (an ISO week, Monday to Sunday, UTC) — src/protocol/permit.rs.

const DAY_MS = 86_400_000;

function isoWeekStart(year, week) {
  // ISO week 1 holds January 4th.
  const jan4 = Date.UTC(year, 0, 4);
  const jan4Weekday = (new Date(jan4).getUTCDay() + 6) % 7;
  return jan4 - jan4Weekday * DAY_MS + (week - 1) * 7 * DAY_MS;
}

/** { kind, start, end } in epoch ms, or null for text that is no window. */
export function parseWindow(text) {
  let match = /^(\d{4})-W(\d{2})$/.exec(text);
  if (match) {
    const start = isoWeekStart(Number(match[1]), Number(match[2]));
    return { kind: 'week', start, end: start + 7 * DAY_MS };
  }
  match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (match) {
    const start = Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]));
    return { kind: 'day', start, end: start + DAY_MS };
  }
  return null;
}

/** The window of `kind` that contains the UTC day `date` (`YYYY-MM-DD`). */
export function containing(kind, date) {
  if (kind === 'day') return date;
  const day = parseWindow(date).start;
  const weekday = (new Date(day).getUTCDay() + 6) % 7;
  const thursday = new Date(day - weekday * DAY_MS + 3 * DAY_MS);
  const year = thursday.getUTCFullYear();
  const week = Math.floor((thursday - Date.UTC(year, 0, 1)) / DAY_MS / 7) + 1;
  return `${year}-W${String(week).padStart(2, '0')}`;
}

export function today(now = Date.now()) {
  return new Date(now).toISOString().slice(0, 10);
}

/** upcoming, current or expired at `now` (no skew: the wallet's own view). */
export function timeState(windowText, now = Date.now()) {
  const w = parseWindow(windowText);
  if (!w || now >= w.end) return 'expired';
  return now < w.start ? 'upcoming' : 'current';
}
