// The public deletion page: every isolation period with its deadline, when
// its key was destroyed and its status, computed here from the issuer's
// signed audit log (checkpoint signature verified, entries checked against
// the tree root). The log key is the one the issuer serves, shown in full so
// that a reader can compare it with the one published elsewhere.

import { getText } from './lib/api.js';
import { t, setup as setupI18n, onChange } from './lib/i18n.js';
import { fetchLog, parseLogKey, periods } from './lib/log.js';

const $ = (id) => document.getElementById(id);
let state = null;

function when(text) {
  return text ? text.replace('T', ' ').replace(/(\.\d+)?Z$/, ' UTC').replace(/(\.\d+)?\+00:00$/, ' UTC') : '—';
}

function status(period, now) {
  if (period.destroyed) {
    return period.lateByS > 0 ? ['destroyed-late', t('status.destroyed-late', { late: period.lateByS })] : ['destroyed', t('status.destroyed')];
  }
  if (period.deadline && Date.parse(period.deadline) < now) return ['overdue', t('status.overdue')];
  if (period.ended || (period.endsAt && Date.parse(period.endsAt) < now)) return ['ended', t('status.ended')];
  return ['live', t('status.live')];
}

function render() {
  const summary = $('summary');
  if (!state) return;
  if (state.error) {
    summary.textContent = t('transparency.failed', { detail: state.error });
    summary.className = 'summary bad';
    return;
  }
  summary.textContent = t('transparency.verified', { size: state.log.size });
  summary.className = 'summary good';
  const now = Date.now();
  const rows = periods(state.log.entries).map((period) => {
    const row = document.createElement('tr');
    const [code, text] = status(period, now);
    row.className = `period ${code}`;
    row.dataset.period = period.id;
    const cells = [
      `${period.name ?? ''} (${period.id.slice(0, 8)})`,
      when(period.endsAt),
      when(period.deadline),
      when(period.destroyed),
      text,
    ];
    for (const [index, value] of cells.entries()) {
      const cell = document.createElement(index === 0 ? 'th' : 'td');
      if (index === 0) cell.scope = 'row';
      cell.textContent = value;
      cell.dataset.label = t(['col.period', 'col.ends', 'col.deadline', 'col.destroyed', 'col.status'][index]);
      row.append(cell);
    }
    return row;
  });
  $('periods').replaceChildren(...rows);
}

async function main() {
  setupI18n();
  onChange(render);
  try {
    const keyText = (await getText('/audit/key')).trim();
    $('log-key').textContent = keyText;
    state = { log: await fetchLog(await parseLogKey(keyText), null) };
  } catch (error) {
    state = { error: error.message };
  }
  render();
  document.body.classList.add('ready');
}

main();
