// The message catalogue: every string a user sees, in English and Russian.
// The language comes from the browser, and the switch in the header keeps
// the choice on this device.

const MESSAGES = {
  en: {
    'lang.switch': 'Русский',
    'lang.switch.label': 'Переключить на русский язык',
    'wallet.title': 'blindpass — my passes',
    'wallet.heading': 'My passes',
    'verify.heading': 'Verifier',
    'transparency.heading': 'Deletion log',
    'wallet.intro': 'Movement passes that the issuer cannot link to you. Your passes stay on this device.',
    'enrol.heading': 'Enrol',
    'login.heading': 'Log in',
    'field.full_name': 'Full name',
    'field.date_of_birth': 'Date of birth',
    'field.document_number': 'Identity document number',
    'field.address': 'Address',
    'field.phone': 'Phone (+ and digits)',
    'field.employer_tax_number': 'Employer tax number (for work passes)',
    'field.password': 'Password (at least 10 characters)',
    'field.class': 'Kind of pass',
    'field.date': 'Day (a weekly pass covers its whole week)',
    'enrol.submit': 'Enrol',
    'enrol.done': 'Enrolled. Now log in with your document number and password.',
    'login.submit': 'Log in',
    'account.heading': 'Request a pass',
    'request.submit': 'Request pass',
    'request.working': 'Checking the key in the public log and blinding…',
    'request.done': 'Pass received.',
    'logout': 'Log out',
    'erase': 'Erase my enrolment',
    'erase.confirm': 'Erase your enrolment on the server now? Passes on this device stay.',
    'erase.done': 'Your enrolment was erased.',
    'passes.heading': 'Passes on this device',
    'passes.none': 'No passes yet.',
    'pass.show': 'Show',
    'pass.delete': 'Delete',
    'pass.close': 'Close',
    'pass.print': 'Print',
    'pass.save': 'Save',
    'pass.save.label': 'Save as a picture',
    'pass.state.upcoming': 'Upcoming',
    'pass.state.current': 'Valid today',
    'pass.state.expired': 'Expired',
    'pass.sr': 'Pass {class}, {window}: {state}',
    'pass.show.label': 'Show pass {class}, {window}: {state}',
    'pass.delete.label': 'Delete pass {class}, {window}',
    'pass.print.note': 'Show this page to an officer. It does not name you.',
    'class.personal': 'Personal (one day, 2 a week)',
    'class.work': 'Work (one week)',
    'class.medical': 'Medical (one day)',
    'logkey.label': 'Audit log key (pinned on first use):',
    'logkey.none': 'not pinned yet',
    'pin.key-changed': 'WARNING: the audit log key changed since this device pinned it. Pinned: {pinned}. Served now: {served}. This log is not the one this device saw before; do not trust it.',
    'pin.origin-changed': 'WARNING: the audit log changed its name since this device pinned it ({detail}). Do not trust it.',
    'pin.rolled-back': 'WARNING: the audit log is shorter than the checkpoint this device pinned ({size} entries): history was rewritten. Do not trust it.',
    'pin.forked': 'WARNING: the audit log no longer starts with the {size} entries this device pinned: history was rewritten. Do not trust it.',
    'pin.first': 'First visit: this log key and checkpoint are now pinned on this device.',
    'pin.kept': 'Consistent with the checkpoint this device pinned before ({size} entries).',
    'nav.verify': 'Verifier',
    'nav.transparency': 'Deletion log',
    'nav.wallet': 'My passes',
    // Problems from the API, by type.
    'problem.duplicate-document': 'This document is already enrolled.',
    'problem.invalid-credentials': 'Wrong document number or password.',
    'problem.quota-exceeded': 'Weekly quota used up: no more passes of this kind this week.',
    'problem.not-eligible': 'You cannot get this kind of pass (an employer tax number is needed).',
    'problem.window-out-of-range': 'No pass can be issued for that day yet.',
    'problem.no-open-period': 'Enrolment is closed: no isolation period is open.',
    'problem.period-ended': 'The isolation period has ended; no passes are issued.',
    'problem.rate-limited': 'Too many attempts. Wait a little and try again.',
    'problem.overloaded': 'The service is busy. Try again in a moment.',
    'problem.unauthorized': 'Please log in again.',
    'problem.session-expired': 'Your session expired. Please log in again.',
    'problem.network': 'No connection to the service.',
    'problem.other': 'The request failed: {detail}',
    // Field rules from the API's invalid-input answers.
    'rule.must not be empty': 'Required.',
    'rule.is too long': 'Too long.',
    'rule.must not contain control characters': 'Contains characters that are not allowed.',
    'rule.must not be in the future': 'Cannot be in the future.',
    'rule.resident must be 14 or older': 'You must be 14 or older.',
    'rule.must be 4-20 letters and digits': '4 to 20 letters and digits.',
    'rule.must be + followed by 8-15 digits': '+ followed by 8 to 15 digits.',
    'rule.must be 8-15 digits': '8 to 15 digits.',
    'rule.is required for this class': 'Needed for this kind of pass.',
    'rule.other': 'Not accepted: {rule}',
    // The key-consistency check.
    'key.not-logged': 'Refused: the issuer offered a signing key ({key}) that its public audit log does not show for {class}, {window}. It could be used to single you out. No pass was requested.',
    'key.split': 'Refused: the public audit log shows more than one key for {class}, {window}. No pass was requested.',
    'key.mismatch': 'Refused: the published key does not match its id. No pass was requested.',
    'key.none': 'No key is published for {class}, {window}.',
    'log.failed': 'The public audit log failed its check ({detail}). No pass was requested.',
    // Verifier.
    'verify.title': 'blindpass — verifier',
    'verify.scan': 'Scan with camera',
    'verify.stop': 'Stop camera',
    'verify.file': 'Read a picture',
    'verify.paste': 'Or paste the pass text',
    'verify.check': 'Check',
    'verify.sync': 'Update keys',
    'verify.directory.none': 'No keys yet: connect once to download them.',
    'verify.directory.age': 'Keys updated {age} ago ({count} keys).',
    'verify.directory.stale': 'Keys are out of date (updated {age} ago): results still use them — update when online.',
    'verify.directory.offline': 'Offline: using the saved keys.',
    'verify.valid': 'VALID',
    'verify.invalid': 'INVALID',
    'verify.again': 'Next',
    'verify.no-record': 'Nothing about scans is kept.',
    'verify.camera-error': 'The camera cannot be used: {detail}',
    'verify.no-code': 'No QR code found in the picture.',
    'reason.malformed': 'Not a blindpass pass.',
    'reason.unknown-key': 'Unknown key: not signed by this issuer (or the keys need an update).',
    'reason.wrong-issuer': 'Issued for another issuer.',
    'reason.bad-signature': 'Signature does not verify: the pass was altered or forged.',
    'reason.not-yet-valid': 'Not valid yet: {class}, {window}.',
    'reason.expired': 'Expired: {class}, {window}.',
    // Transparency.
    'transparency.title': 'blindpass — deletion log',
    'transparency.intro': 'Every isolation period, its deadline and when its key was destroyed, read from the issuer\'s signed public log and checked in this browser.',
    'transparency.verified': 'Checkpoint signature verified; {size} entries match the tree root.',
    'transparency.failed': 'The log failed its check: {detail}',
    'transparency.logkey': 'Log key:',
    'transparency.raw': 'Raw log: checkpoint',
    'transparency.full': 'This page checks the log against the checkpoint pinned on this device only; the full check, including every rule of the log, is on the command line:',
    'col.period': 'Period',
    'col.ends': 'End',
    'ends.early': '{at}, ended early (planned: {planned})',
    'col.deadline': 'Destruction deadline',
    'col.destroyed': 'Key destroyed',
    'col.status': 'Status',
    'status.live': 'Live',
    'status.ended': 'Ended, awaiting destruction',
    'status.destroyed': 'Destroyed on time',
    'status.late': 'LATE: destroyed {late} s after the deadline',
    'status.misreported': 'The destruction entry misstates its deadline or lateness',
    'status.overdue': 'OVERDUE: deadline passed, no destruction logged',
  },
  ru: {
    'lang.switch': 'English',
    'lang.switch.label': 'Switch to English',
    'wallet.title': 'blindpass — мои пропуска',
    'wallet.heading': 'Мои пропуска',
    'verify.heading': 'Проверка',
    'transparency.heading': 'Журнал удаления',
    'wallet.intro': 'Пропуска, которые выдающий не может связать с вами. Пропуска хранятся только на этом устройстве.',
    'enrol.heading': 'Регистрация',
    'login.heading': 'Вход',
    'field.full_name': 'ФИО',
    'field.date_of_birth': 'Дата рождения',
    'field.document_number': 'Номер документа',
    'field.address': 'Адрес',
    'field.phone': 'Телефон (+ и цифры)',
    'field.employer_tax_number': 'ИНН работодателя (для рабочего пропуска)',
    'field.password': 'Пароль (не короче 10 символов)',
    'field.class': 'Вид пропуска',
    'field.date': 'День (недельный пропуск действует всю неделю)',
    'enrol.submit': 'Зарегистрироваться',
    'enrol.done': 'Вы зарегистрированы. Войдите по номеру документа и паролю.',
    'login.submit': 'Войти',
    'account.heading': 'Получить пропуск',
    'request.submit': 'Получить пропуск',
    'request.working': 'Проверяем ключ в открытом журнале и ослепляем…',
    'request.done': 'Пропуск получен.',
    'logout': 'Выйти',
    'erase': 'Удалить мою регистрацию',
    'erase.confirm': 'Удалить вашу регистрацию на сервере сейчас? Пропуска на устройстве останутся.',
    'erase.done': 'Ваша регистрация удалена.',
    'passes.heading': 'Пропуска на этом устройстве',
    'passes.none': 'Пропусков пока нет.',
    'pass.show': 'Показать',
    'pass.delete': 'Удалить',
    'pass.close': 'Закрыть',
    'pass.print': 'Печать',
    'pass.save': 'Сохранить',
    'pass.save.label': 'Сохранить картинкой',
    'pass.state.upcoming': 'Ещё не начался',
    'pass.state.current': 'Действует сегодня',
    'pass.state.expired': 'Истёк',
    'pass.sr': 'Пропуск {class}, {window}: {state}',
    'pass.show.label': 'Показать пропуск {class}, {window}: {state}',
    'pass.delete.label': 'Удалить пропуск {class}, {window}',
    'pass.print.note': 'Покажите эту страницу сотруднику. Ваше имя на ней не указано.',
    'class.personal': 'Личный (один день, 2 в неделю)',
    'class.work': 'Рабочий (одна неделя)',
    'class.medical': 'Медицинский (один день)',
    'logkey.label': 'Ключ журнала аудита (закреплён при первом использовании):',
    'logkey.none': 'ещё не закреплён',
    'pin.key-changed': 'ВНИМАНИЕ: ключ журнала аудита изменился с тех пор, как это устройство его закрепило. Закреплён: {pinned}. Сейчас: {served}. Это не тот журнал, который устройство видело раньше; не доверяйте ему.',
    'pin.origin-changed': 'ВНИМАНИЕ: журнал аудита сменил имя с тех пор, как это устройство его закрепило ({detail}). Не доверяйте ему.',
    'pin.rolled-back': 'ВНИМАНИЕ: журнал аудита короче закреплённой на этом устройстве контрольной точки ({size} записей): история переписана. Не доверяйте ему.',
    'pin.forked': 'ВНИМАНИЕ: журнал аудита больше не начинается с {size} записей, закреплённых на этом устройстве: история переписана. Не доверяйте ему.',
    'pin.first': 'Первое посещение: ключ журнала и контрольная точка закреплены на этом устройстве.',
    'pin.kept': 'Согласуется с контрольной точкой, закреплённой на этом устройстве ранее ({size} записей).',
    'nav.verify': 'Проверка',
    'nav.transparency': 'Журнал удаления',
    'nav.wallet': 'Мои пропуска',
    'problem.duplicate-document': 'Этот документ уже зарегистрирован.',
    'problem.invalid-credentials': 'Неверный номер документа или пароль.',
    'problem.quota-exceeded': 'Недельный лимит исчерпан: пропусков этого вида на этой неделе больше нет.',
    'problem.not-eligible': 'Этот вид пропуска вам недоступен (нужен ИНН работодателя).',
    'problem.window-out-of-range': 'На этот день пропуск пока не выдаётся.',
    'problem.no-open-period': 'Регистрация закрыта: режим изоляции не объявлен.',
    'problem.period-ended': 'Режим изоляции закончился; пропуска не выдаются.',
    'problem.rate-limited': 'Слишком много попыток. Подождите и попробуйте снова.',
    'problem.overloaded': 'Сервис перегружен. Попробуйте через минуту.',
    'problem.unauthorized': 'Войдите снова.',
    'problem.session-expired': 'Сеанс истёк. Войдите снова.',
    'problem.network': 'Нет связи с сервисом.',
    'problem.other': 'Запрос не выполнен: {detail}',
    'rule.must not be empty': 'Обязательное поле.',
    'rule.is too long': 'Слишком длинно.',
    'rule.must not contain control characters': 'Недопустимые символы.',
    'rule.must not be in the future': 'Дата не может быть в будущем.',
    'rule.resident must be 14 or older': 'Вам должно быть не меньше 14 лет.',
    'rule.must be 4-20 letters and digits': 'От 4 до 20 букв и цифр.',
    'rule.must be + followed by 8-15 digits': '+ и от 8 до 15 цифр.',
    'rule.must be 8-15 digits': 'От 8 до 15 цифр.',
    'rule.is required for this class': 'Нужно для этого вида пропуска.',
    'rule.other': 'Не принято: {rule}',
    'key.not-logged': 'Отказ: выдающий предложил ключ подписи ({key}), которого нет в его открытом журнале аудита для {class}, {window}. Таким ключом вас можно выделить. Пропуск не запрошен.',
    'key.split': 'Отказ: в открытом журнале больше одного ключа для {class}, {window}. Пропуск не запрошен.',
    'key.mismatch': 'Отказ: опубликованный ключ не совпадает со своим идентификатором. Пропуск не запрошен.',
    'key.none': 'Для {class}, {window} ключ не опубликован.',
    'log.failed': 'Открытый журнал аудита не прошёл проверку ({detail}). Пропуск не запрошен.',
    'verify.title': 'blindpass — проверка',
    'verify.scan': 'Сканировать камерой',
    'verify.stop': 'Выключить камеру',
    'verify.file': 'Прочитать картинку',
    'verify.paste': 'Или вставьте текст пропуска',
    'verify.check': 'Проверить',
    'verify.sync': 'Обновить ключи',
    'verify.directory.none': 'Ключей нет: подключитесь один раз, чтобы их загрузить.',
    'verify.directory.age': 'Ключи обновлены {age} назад ({count} ключей).',
    'verify.directory.stale': 'Ключи устарели (обновлены {age} назад): проверка идёт по ним — обновите при связи.',
    'verify.directory.offline': 'Нет связи: используются сохранённые ключи.',
    'verify.valid': 'ДЕЙСТВИТЕЛЕН',
    'verify.invalid': 'НЕДЕЙСТВИТЕЛЕН',
    'verify.again': 'Дальше',
    'verify.no-record': 'Сведения о проверках не сохраняются.',
    'verify.camera-error': 'Камера недоступна: {detail}',
    'verify.no-code': 'На картинке не найден QR-код.',
    'reason.malformed': 'Это не пропуск blindpass.',
    'reason.unknown-key': 'Неизвестный ключ: подписан не этим выдающим (или ключи надо обновить).',
    'reason.wrong-issuer': 'Выдан другим выдающим.',
    'reason.bad-signature': 'Подпись не сходится: пропуск изменён или подделан.',
    'reason.not-yet-valid': 'Ещё не действует: {class}, {window}.',
    'reason.expired': 'Истёк: {class}, {window}.',
    'transparency.title': 'blindpass — журнал удаления',
    'transparency.intro': 'Каждый режим изоляции, срок уничтожения и время уничтожения его ключа — по подписанному открытому журналу выдающего, проверенному в этом браузере.',
    'transparency.verified': 'Подпись контрольной точки верна; {size} записей сходятся с корнем дерева.',
    'transparency.failed': 'Журнал не прошёл проверку: {detail}',
    'transparency.logkey': 'Ключ журнала:',
    'transparency.raw': 'Журнал как есть: контрольная точка',
    'transparency.full': 'Эта страница сверяет журнал только с контрольной точкой, закреплённой на этом устройстве; полная проверка, со всеми правилами журнала, — в командной строке:',
    'col.period': 'Режим',
    'col.ends': 'Конец',
    'ends.early': '{at}, закончен досрочно (по плану: {planned})',
    'col.deadline': 'Срок уничтожения',
    'col.destroyed': 'Ключ уничтожен',
    'col.status': 'Состояние',
    'status.live': 'Действует',
    'status.ended': 'Закончен, ждёт уничтожения',
    'status.destroyed': 'Уничтожен в срок',
    'status.late': 'С ОПОЗДАНИЕМ: уничтожен через {late} с после срока',
    'status.misreported': 'Запись об уничтожении искажает срок или опоздание',
    'status.overdue': 'ПРОСРОЧЕН: срок прошёл, уничтожение не записано',
  },
};

const STORAGE_KEY = 'blindpass.lang';

function initial() {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved && MESSAGES[saved]) return saved;
  const wanted = navigator.languages?.length ? navigator.languages : [navigator.language];
  for (const tag of wanted) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (MESSAGES[base]) return base;
  }
  return 'en';
}

let lang = initial();
const listeners = [];

export function language() {
  return lang;
}

/** The message `key` with `{name}` placeholders filled from `params`. */
export function t(key, params = {}) {
  const text = MESSAGES[lang][key] ?? MESSAGES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ''));
}

export function has(key) {
  return key in MESSAGES.en;
}

/** Fills every `data-i18n` element (text) and `data-i18n-label` (aria-label). */
export function apply(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
  const title = document.querySelector('[data-i18n-title]');
  if (title) document.title = t(title.dataset.i18nTitle);
}

export function onChange(listener) {
  listeners.push(listener);
}

/** Wires the header's language button. */
export function setup() {
  apply();
  const button = document.getElementById('lang');
  button?.addEventListener('click', () => {
    lang = lang === 'ru' ? 'en' : 'ru';
    localStorage.setItem(STORAGE_KEY, lang);
    apply();
    for (const listener of listeners) listener();
  });
}
