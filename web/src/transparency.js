// The public deletion page: every isolation period with its deadline, when
// its key was destroyed and its status, computed here from the issuer's
// signed audit log (checkpoint signature verified, entries checked against
// the tree root). The log key and the checkpoint are pinned on this device
// on the first visit; a later visit that finds another key, or a log that
// does not extend the pinned checkpoint, shows a red warning instead of
// the periods. The key is shown in full, to compare with one published
// elsewhere.

import { t, setup as setupI18n, onChange } from './lib/i18n.js';
import { LogError, isTampering, pinned, pinnedLog, periods } from './lib/log.js';

const $ = (id) => document.getElementById(id);
let state = null;

function when(text) {
  return text ? text.replace('T', ' ').replace(/(\.\d+)?Z$/, ' UTC').replace(/(\.\d+)?\+00:00$/, ' UTC') : '—';
}

/** What the log says happened to a period, as a status code and its text. */
function status(period, now) {
  if (period.destroyed) {
    if (period.misreported) return ['misreported', t('status.misreported')];
    return period.lateByS > 0
      ? ['late', t('status.late', { late: period.lateByS })]
      : ['destroyed', t('status.destroyed')];
  }
  if (period.deadline && Date.parse(period.deadline) < now) return ['overdue', t('status.overdue')];
  if (period.endedEarly || (period.endsAt && Date.parse(period.endsAt) < now)) return ['ended', t('status.ended')];
  return ['live', t('status.live')];
}

function ends(period) {
  if (!period.endedEarly) return when(period.endsAt);
  return t('ends.early', { at: when(period.endedEarly), planned: when(period.plannedEnd) });
}

/** The red warning of a log that is not the one this device pinned, else null. */
function tamperingText(error) {
  switch (error.code) {
    case 'key-changed': return t('pin.key-changed', { pinned: error.pinned, served: error.served });
    case 'origin-changed': return t('pin.origin-changed', { detail: error.message });
    case 'rolled-back': return t('pin.rolled-back', { size: error.pinnedSize });
    case 'forked': return t('pin.forked', { size: error.pinnedSize });
    default: return null;
  }
}

function render() {
  const summary = $('summary');
  const warning = $('log-warning');
  if (!state) return;
  warning.hidden = true;
  if (state.error) {
    const tampered = isTampering(state.error) ? tamperingText(state.error) : null;
    if (tampered) {
      warning.textContent = tampered;
      warning.hidden = false;
      summary.textContent = '';
      summary.className = 'summary';
    } else {
      summary.textContent = t('transparency.failed', { detail: state.error.message });
      summary.className = 'summary bad';
    }
    $('periods').replaceChildren();
    return;
  }
  summary.textContent = `${t('transparency.verified', { size: state.log.size })} ${state.firstUse ? t('pin.first') : t('pin.kept', { size: state.pinnedSize })}`;
  summary.className = 'summary good';
  const now = Date.now();
  const rows = periods(state.log.entries).map((period) => {
    const row = document.createElement('tr');
    const [code, text] = status(period, now);
    row.className = `period ${code}`;
    row.dataset.period = period.id;
    const cells = [
      `${period.name ?? ''} (${period.id.slice(0, 8)})`,
      ends(period),
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
    const { log, keyText, firstUse, pinnedSize } = await pinnedLog();
    $('log-key').textContent = keyText;
    state = { log, firstUse, pinnedSize };
  } catch (error) {
    state = { error: error instanceof LogError ? error : new LogError('failed', error.message) };
    $('log-key').textContent = state.error.pinned ?? pinned().key ?? '';
  }
  render();
  document.body.classList.add('ready');
}

main();
