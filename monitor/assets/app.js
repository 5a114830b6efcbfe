// tapgate monitor dashboard. Builds every piece of DOM with textContent (never innerHTML), so
// anything a device or a card sends shows as text. Live data arrives by server-sent events from
// /api/live; the page polls for nothing but the day's revenue, re-read when a sale, void, top-up
// or fare arrives on the feed and once a minute, so a new service day shows.
'use strict';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const FEED_MAX = 200;
// When an online device counts as silent: sent by the server with the session (`wording`), so
// the page holds no copy of it. Products are shown by their id, as events name them.
let wording = { silent_after_ms: null };

let csrf = null;
let readOnly = true;
let feed = [];
let minutes = null;
let devices = [];
let currentCard = null;
// The looked-up card's void offer: {card, until, price} while the server says it may be voided.
let voidOffer = null;
let revenueTimer = null;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

async function api(path, options) {
  const opts = Object.assign({ credentials: 'same-origin', headers: {} }, options || {});
  if (opts.method && opts.method !== 'GET') {
    opts.headers['X-CSRF-Token'] = csrf || '';
    if (opts.body !== undefined) opts.headers['Content-Type'] = 'application/json';
  }
  const resp = await fetch(path, opts);
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  if (resp.status === 401 && !readOnly) {
    window.location.assign('/login');
  }
  if (!resp.ok) {
    const msg = body && body.message ? body.message : 'request failed (' + resp.status + ')';
    throw new Error(msg);
  }
  return body;
}

function pad(n) { return String(n).padStart(2, '0'); }

function clock(ms) {
  const d = new Date(ms);
  return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
}

function dateTime(ms) {
  const d = new Date(ms);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + clock(ms);
}

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
  if (h > 0) return h + 'h ' + pad(m) + 'm';
  if (m > 0) return m + 'm ' + pad(sec) + 's';
  return sec + 's';
}

// "12s ago", "5m ago", "3h ago": short enough to stay on one line in the device table.
function ago(ms) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
  if (s < 60) return s + 's ago';
  if (s < 3600) return Math.floor(s / 60) + 'm ago';
  if (s < 172800) return Math.floor(s / 3600) + 'h ago';
  return Math.floor(s / 86400) + 'd ago';
}

// Cuts `text` to at most `max` characters with an ellipsis.
function cut(text, max) {
  const t = String(text);
  return t.length > max ? t.slice(0, Math.max(1, max - 1)) + '\u2026' : t;
}

// The width a chart is drawn at: its box's, so 11px axis text stays 11px on any screen.
function chartWidth(box, fallback) {
  const w = Math.floor(box.clientWidth || 0);
  return w >= 200 ? w : fallback;
}

function seqTime(seq) {
  const ms = Number(String(seq || '').split('-')[0]);
  return Number.isFinite(ms) ? ms : 0;
}

// --- counters --------------------------------------------------------------------------------

// `byProduct`: the keys are product ids, shown as they are; other keys are reasons, shown as words.
function renderCounterGroup(name, values, byProduct) {
  const list = $(name + '-list');
  clear(list);
  let total = 0;
  const entries = Object.entries(values || {});
  for (const [, v] of entries) total += Number(v) || 0;
  $(name + '-total').textContent = total.toLocaleString();
  entries.sort((a, b) => (b[1] - a[1]) || a[0].localeCompare(b[0]));
  const shown = name === 'rejected' ? entries.filter(([, v]) => v > 0).slice(0, 6) : entries;
  for (const [k, v] of shown) {
    const li = el('li', v > 0 ? '' : 'zero');
    li.dataset.counter = name + '.' + k;
    li.appendChild(el('span', '', byProduct ? k : k.replace(/_/g, ' ')));
    li.appendChild(el('b', '', Number(v).toLocaleString()));
    list.appendChild(li);
  }
  if (shown.length === 0) list.appendChild(el('li', 'zero', 'none'));
}

function renderCounters(c) {
  renderCounterGroup('issued', c.issued, true);
  renderCounterGroup('entries', c.entries, true);
  renderCounterGroup('denied', c.denied);
  renderCounterGroup('unpaid', c.unpaid);
  renderCounterGroup('rejected', c.rejected);
}

// --- event feed ------------------------------------------------------------------------------

// Every event arrives with its description (`described`: label, text, and the highlighted trips
// left or price of a sale) written by the server, the same words the terminal tail prints.
function label(e) {
  return e.described ? e.described.label : String(e.event).toUpperCase();
}

// [text, highlight, its class]: the highlight is a pass's trips left or what a sale took.
function describe(e) {
  const d = e.described;
  if (!d) return ['unknown event ' + String(e.event)];
  if (d.price) return [d.text, d.price, 'price'];
  if (d.trips) return [d.text, d.trips, 'trips'];
  return [d.text];
}

function feedItem(e, fresh) {
  const unreadable = e.unreadable !== undefined;
  const kind = unreadable ? 'unreadable' : String(e.event);
  const li = el('li', 'k-' + kind.replace(/[^a-z-]/g, '') + (fresh ? ' fresh' : ''));
  li.dataset.seq = e.seq || '';
  li.appendChild(el('span', 'when', clock(unreadable ? seqTime(e.seq) : e.time)));
  if (unreadable) {
    li.appendChild(el('span', 'label', '?'));
    li.appendChild(el('span', 'text', 'unreadable event ' + e.seq + ' (' + e.unreadable + ')'));
    return li;
  }
  li.appendChild(el('span', 'label', label(e)));
  const parts = describe(e);
  li.appendChild(el('span', 'text', parts[0]));
  if (parts[1]) li.appendChild(el('span', parts[2], parts[1]));
  return li;
}

function feedCount() {
  const c = $('feed-count');
  c.textContent = feed.length ? 'newest first · last ' + feed.length + (feed.length === 1 ? ' event' : ' events') : 'no events yet';
  c.title = 'The stream\'s latest events, newest at the top; the feed keeps the last ' + FEED_MAX + '.';
}

function renderFeed() {
  const list = $('feed');
  clear(list);
  for (let i = feed.length - 1; i >= 0; i--) list.appendChild(feedItem(feed[i], false));
  feedCount();
}

function addEvents(events) {
  const list = $('feed');
  for (const e of events) {
    feed.push(e);
    list.insertBefore(feedItem(e, true), list.firstChild);
    countMinute(e);
    if (REVENUE_EVENTS.has(e.event)) soonRevenue();
    if (e.event === 'card-blocked' || e.event === 'card-unblocked' || e.event === 'card-replaced') {
      loadBlocked();
      loadAudit();
      if (currentCard && (e.card === currentCard || e.detail === currentCard)) lookup(currentCard);
    } else if (currentCard && e.card === currentCard) {
      if (e.event === 'pass-voided') loadAudit();
      lookup(currentCard);
    } else if (e.event === 'pass-voided') {
      loadAudit();
    }
  }
  while (feed.length > FEED_MAX) {
    feed.shift();
    list.removeChild(list.lastChild);
  }
  feedCount();
  renderMinutes();
}

// --- charts ----------------------------------------------------------------------------------

function countMinute(e) {
  if (!minutes || e.unreadable !== undefined) return;
  const key = e.event === 'pass-used' ? 'entries' : e.event === 'pass-denied' ? 'denials' : null;
  if (!key) return;
  shiftMinutes(Date.now());
  const slot = Math.floor((seqTime(e.seq) - minutes.start) / minutes.minute_ms);
  if (slot >= 0 && slot < minutes[key].length) minutes[key][slot] += 1;
}

function shiftMinutes(now) {
  if (!minutes) return;
  const n = minutes.entries.length;
  const wantStart = (Math.floor(now / minutes.minute_ms) + 1 - n) * minutes.minute_ms;
  let steps = Math.round((wantStart - minutes.start) / minutes.minute_ms);
  if (steps <= 0) return;
  steps = Math.min(steps, n);
  for (let i = 0; i < steps; i++) {
    minutes.entries.shift(); minutes.entries.push(0);
    minutes.denials.shift(); minutes.denials.push(0);
  }
  minutes.start = wantStart;
}

// The smallest of 2, 4, 10, 20, 40, 100, ... at or above n, so axis ticks are whole numbers.
function niceMax(n) {
  let base = 1;
  for (;;) {
    for (const m of [2, 4, 10]) {
      if (n <= m * base) return m * base;
    }
    base *= 10;
  }
}

function renderMinutes() {
  const box = $('minutes-chart');
  if (!minutes) return;
  shiftMinutes(Date.now());
  clear(box);
  const W = chartWidth(box, 720), H = 200, L = 34, B = 22, T = 8;
  const n = minutes.entries.length;
  const max = niceMax(Math.max(...minutes.entries, ...minutes.denials));
  const s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img', 'aria-label': 'entries and denials per minute' });
  const plotH = H - B - T;
  const step = (W - L - 4) / n;
  for (const f of max % 2 === 0 ? [0, 0.5, 1] : [0, 1]) {
    const y = T + plotH - f * plotH;
    s.appendChild(svg('line', { x1: L, x2: W, y1: y, y2: y, class: 'grid-line' }));
    const t = svg('text', { x: L - 6, y: y + 4, 'text-anchor': 'end' });
    t.textContent = String(f * max);
    s.appendChild(t);
  }
  let total = 0;
  for (let i = 0; i < n; i++) {
    const x = L + i * step;
    const eh = (minutes.entries[i] / max) * plotH;
    const dh = (minutes.denials[i] / max) * plotH;
    total += minutes.entries[i] + minutes.denials[i];
    const w = Math.max(1, step / 2 - 1);
    const at = clock(minutes.start + i * minutes.minute_ms).slice(0, 5);
    const bar = (attrs, text) => {
      const r = svg('rect', attrs);
      const tip = svg('title');
      tip.textContent = text;
      r.appendChild(tip);
      s.appendChild(r);
    };
    if (eh > 0) bar({ x: x + 1, y: T + plotH - eh, width: w, height: eh, class: 'bar-entry' }, at + ': ' + minutes.entries[i] + ' entries');
    if (dh > 0) bar({ x: x + 1 + w, y: T + plotH - dh, width: w, height: dh, class: 'bar-deny' }, at + ': ' + minutes.denials[i] + ' denials');
  }
  const labels = [[0, '−60 min'], [n / 2, '−30 min'], [n, 'now']];
  for (const [i, label] of labels) {
    const t = svg('text', { x: Math.min(W - 2, L + i * step), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === n ? 'end' : 'middle' });
    t.textContent = label;
    s.appendChild(t);
  }
  box.appendChild(s);
  box.dataset.total = String(total);
}

function renderGates() {
  const box = $('gates-chart');
  clear(box);
  const gates = devices.filter((d) => d.kind === 'gate');
  if (gates.length === 0) {
    box.appendChild(el('div', 'empty', 'No gates have reported yet.'));
    return;
  }
  // Names get the room the longest needs, up to a third of the width; longer ones end in an
  // ellipsis and show in full on hover.
  const rowH = 26, W = chartWidth(box, 360), CHAR = 6.6;
  const longest = Math.max(...gates.map((g) => String(g.device).length));
  const L = Math.round(Math.min(W / 3, Math.max(40, longest * CHAR + 14)));
  const fits = Math.max(3, Math.floor((L - 12) / CHAR));
  const H = gates.length * rowH + 6;
  const max = Math.max(1, ...gates.map((g) => g.granted + g.denied));
  const s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img', 'aria-label': 'granted and denied per gate' });
  gates.forEach((g, i) => {
    const y = 4 + i * rowH;
    const name = svg('text', { x: L - 8, y: y + 15, 'text-anchor': 'end', class: 'gate-name' });
    name.textContent = cut(g.device, fits);
    const tip = svg('title');
    tip.textContent = 'gate ' + g.device + ': ' + g.granted + ' granted, ' + g.denied + ' denied';
    name.appendChild(tip);
    s.appendChild(name);
    const span = Math.max(40, W - L - 70);
    const gw = (g.granted / max) * span, dw = (g.denied / max) * span;
    s.appendChild(svg('rect', { x: L, y: y + 3, width: Math.max(gw, 0), height: 16, class: 'bar-grant' }));
    s.appendChild(svg('rect', { x: L + gw, y: y + 3, width: Math.max(dw, 0), height: 16, class: 'bar-deny' }));
    const v = svg('text', { x: L + gw + dw + 6, y: y + 15 });
    v.textContent = g.granted + ' / ' + g.denied;
    s.appendChild(v);
  });
  box.appendChild(s);
}

// --- devices ---------------------------------------------------------------------------------

function renderDevices() {
  const body = $('devices-body');
  clear(body);
  let online = 0;
  for (const d of devices) {
    const tr = el('tr');
    tr.dataset.device = d.kind + '/' + d.device;
    const name = el('td', 'device-name');
    name.appendChild(el('span', 'muted', d.kind + ' '));
    name.appendChild(el('span', '', d.device));
    name.title = d.kind + ' ' + d.device;
    tr.appendChild(name);
    const st = el('td', 'nowrap');
    const silent = d.online && d.last_seen && wording.silent_after_ms != null &&
      Date.now() - d.last_seen > wording.silent_after_ms;
    const dot = el('span', 'dot ' + (d.online ? (silent ? 'stale' : 'on') : 'off'));
    st.appendChild(dot);
    st.appendChild(document.createTextNode(d.online == null ? 'unknown' : d.online ? (silent ? 'silent' : 'online') : 'offline'));
    if (d.online) online += 1;
    tr.appendChild(st);
    const seen = el('td', 'nowrap', ago(d.last_seen));
    if (d.last_seen) seen.title = dateTime(d.last_seen);
    tr.appendChild(seen);
    tr.appendChild(el('td', 'num', d.granted));
    tr.appendChild(el('td', 'num', d.denied));
    tr.appendChild(el('td', 'num', d.issued));
    body.appendChild(tr);
  }
  if (devices.length === 0) {
    const tr = el('tr');
    const td = el('td', 'empty', 'No devices yet.');
    td.colSpan = 6;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  $('devices-summary').textContent = devices.length ? online + ' of ' + devices.length + ' online' : '';
  renderGates();
}

// --- card lookup and deny list ---------------------------------------------------------------

function message(text, ok) {
  const m = $('card-message');
  m.textContent = text;
  m.className = 'message ' + (ok ? 'ok' : 'err');
}

function dlRow(dl, k, v, cls) {
  dl.appendChild(el('dt', '', k));
  dl.appendChild(el('dd', cls || '', v));
}

async function lookup(card) {
  const box = $('card-result');
  try {
    const r = await api('/api/cards/' + encodeURIComponent(card));
    currentCard = r.card;
    clear(box);
    box.className = 'card-result';
    const dl = el('dl');
    dl.id = 'card-details';
    dlRow(dl, 'Card', r.card);
    if (r.pass) {
      dlRow(dl, 'Pass', String(r.pass.type));
      if (r.pass.trips_remaining != null) dlRow(dl, 'Trips left', r.pass.trips_remaining);
      if (r.pass.remaining_ms != null) dlRow(dl, 'Time left', r.pass.remaining_ms > 0 ? duration(r.pass.remaining_ms) : 'expired');
      if (r.pass.price_text) dlRow(dl, 'Price', r.pass.price_text);
      if (r.pass.issued_at) {
        dlRow(dl, 'Sold', dateTime(r.pass.issued_at) + (r.pass.sold_by ? ' at ' + r.pass.sold_by : ''));
      }
      if (r.pass.day) dlRow(dl, 'Service day', r.pass.day);
      if (r.pass.used_at) dlRow(dl, 'First used', dateTime(r.pass.used_at));
    } else {
      dlRow(dl, 'Pass', 'none');
    }
    showWallet(dl, r.wallet);
    if (r.blocked) {
      dlRow(dl, 'Blocked', (r.blocked.reason || '?') + (r.blocked.by ? ' by ' + r.blocked.by : '') + (r.blocked.at ? ', ' + dateTime(r.blocked.at) : ''), 'badge-blocked');
    } else {
      dlRow(dl, 'Blocked', 'no');
    }
    box.appendChild(dl);
    const ol = el('ol');
    for (const e of r.recent) {
      if (e.unreadable !== undefined) { ol.appendChild(el('li', '', 'unreadable event')); continue; }
      const parts = describe(e);
      ol.appendChild(el('li', '', clock(e.time) + ' ' + label(e) + ' ' + parts.slice(0, 2).join('')));
    }
    if (r.recent.length) box.appendChild(ol);
    $('block-controls').hidden = readOnly;
    $('block-btn').hidden = !!r.blocked;
    // A replaced card stays blocked: its pass and balance are the new card's.
    $('unblock-btn').hidden = !r.blocked || r.blocked.reason === 'replaced';
    showVoid(r);
    showReplace(r);
  } catch (err) {
    currentCard = null;
    clear(box);
    box.className = 'card-result error';
    box.textContent = err.message;
    $('block-controls').hidden = true;
    showVoid(null);
    showReplace(null);
  }
}

// Pay as you go: the balance, and this service day's and week's charges against the caps (as
// the server read them under the fare catalogue), with what the next entry would cost.
function showWallet(dl, w) {
  if (!w) return;
  dlRow(dl, 'Balance', w.balance_text || '?', w.balance < 0 ? 'badge-blocked' : '');
  const against = (text, cap) => (text || '0') + (cap ? ' of ' + cap + ' cap' : '');
  dlRow(dl, 'Charged today', against(w.day_charged_text, w.daily_cap_text) + ' (service day ' + w.day + ')');
  dlRow(dl, 'Charged this week', against(w.week_charged_text, w.weekly_cap_text) + ' (from ' + w.week + ')');
  if (w.next_fare_text != null) {
    dlRow(dl, 'Next entry', w.next_fare === 0 ? 'free (capped)' : w.next_fare_text);
  }
}

// --- replacing a lost card -------------------------------------------------------------------

// Operators may move a card's pass and balance to a new card while it is not blocked and holds
// something; the server checks again and says why not.
// A live refresh of the same card keeps what the operator typed and an armed confirmation.
let replaceFor = null;

function showReplace(r) {
  const can = !readOnly && r && !r.blocked && (r.pass || r.wallet);
  const card = can ? r.card : null;
  if (card !== replaceFor) {
    disarmReplace();
    $('replace-input').value = '';
    replaceFor = card;
  }
  $('replace-controls').hidden = !can;
}

// A replacement takes two clicks: the first names both cards; the second replaces only if the
// new card is still the one named.
let replaceArmed = null;

function disarmReplace() {
  if (replaceArmed) clearTimeout(replaceArmed.timer);
  replaceArmed = null;
  $('replace-btn').textContent = 'Replace card';
}

async function replaceCard() {
  if (!currentCard) return;
  const card = currentCard;
  const to = $('replace-input').value.trim().toUpperCase();
  if (!/^[0-9A-Z]{1,32}$/.test(to)) {
    message('Enter the new card number (letters and digits).', false);
    return;
  }
  if (!replaceArmed || replaceArmed.to !== to || replaceArmed.card !== card) {
    disarmReplace();
    $('replace-btn').textContent = 'Confirm: move to ' + to + ' and block ' + card;
    replaceArmed = { timer: setTimeout(disarmReplace, 5000), to, card };
    return;
  }
  disarmReplace();
  try {
    const r = await api('/api/cards/' + encodeURIComponent(card) + '/replace', {
      method: 'POST', body: JSON.stringify({ to }),
    });
    message('Card ' + r.card + ' replaced by ' + r.to + '; ' + r.card + ' is blocked.', true);
    $('card-input').value = r.to;
    await lookup(r.to);
  } catch (err) {
    message(err.message, false);
    await lookup(card);
  }
  loadBlocked();
  loadAudit();
}

// --- voiding a sale --------------------------------------------------------------------------

// The "Void sale" button, while the server says the looked-up pass may be voided; otherwise why
// not. Operators only.
function showVoid(r) {
  const controls = $('void-controls'), btn = $('void-btn'), note = $('void-note');
  disarmVoid();
  const v = r && r.pass ? r.pass.void : null;
  voidOffer = v && v.voidable ? { card: r.card, until: v.until, price: r.pass.price_text } : null;
  controls.hidden = readOnly || !v;
  btn.hidden = !voidOffer;
  if (voidOffer) {
    note.textContent = 'possible until ' + clock(voidOffer.until);
  } else {
    note.textContent = v ? 'Cannot void: ' + v.message : '';
  }
}

// The offer ends when its window does, without asking the server.
function expireVoid() {
  if (voidOffer && Date.now() > voidOffer.until) {
    voidOffer = null;
    disarmVoid();
    $('void-btn').hidden = true;
    $('void-note').textContent = 'Cannot void: the void window has passed';
  }
}

// A void takes two clicks: the first names what will be given back.
let voidArmed = null;

function disarmVoid() {
  clearTimeout(voidArmed);
  voidArmed = null;
  $('void-btn').textContent = 'Void sale';
}

async function voidSale() {
  if (!voidOffer) return;
  const offer = voidOffer;
  if (!voidArmed) {
    $('void-btn').textContent = 'Confirm: void ' + (offer.price || 'this') + ' sale';
    voidArmed = setTimeout(disarmVoid, 5000);
    return;
  }
  disarmVoid();
  try {
    const r = await api('/api/cards/' + encodeURIComponent(offer.card) + '/void', { method: 'POST' });
    message('Sale voided: ' + r.product + ' for ' + r.amount + ' on card ' + r.card + '.', true);
  } catch (err) {
    message(err.message, false);
  }
  await lookup(offer.card);
  loadRevenue();
  loadAudit();
}

// --- revenue ---------------------------------------------------------------------------------

// Events that change the day's revenue: sales, voids, top-ups and fares paid as you go.
const REVENUE_EVENTS = new Set(['pass-issued', 'pass-voided', 'topped-up', 'fare-charged']);

function revenueRow(body, name, title, t) {
  const tr = el('tr', t.sales || t.amount ? '' : 'zero');
  tr.dataset.row = title;
  const td = el('td', '', name);
  td.title = title;
  tr.appendChild(td);
  tr.appendChild(el('td', 'num', t.sales === null ? '' : Number(t.sales).toLocaleString()));
  tr.appendChild(el('td', 'num', t.amount_text));
  body.appendChild(tr);
}

// What the takings hold and what the day earned: top-ups are money held for riders, earned only
// as gates charge fares from them; revenue recognised is pass sales plus those fares. Shown when
// the catalogue has pay as you go or the day has top-ups or fares.
function renderRevenueSplit(r) {
  const t = r.totals;
  const shown = r.payg || t.top_ups !== 0 || t.fares !== 0;
  $('revenue-split').hidden = !shown;
  const body = $('revenue-split-body');
  clear(body);
  if (!shown) return;
  revenueRow(body, 'Top-ups (held for riders)', 'top_ups',
    { sales: t.top_ups, amount: t.topped_up, amount_text: t.topped_up_text });
  revenueRow(body, 'Pass sales, net of voids', 'pass_sales',
    { sales: t.pass_sales, amount: t.pass_amount, amount_text: t.pass_amount_text });
  revenueRow(body, 'Fares paid as you go', 'fares',
    { sales: t.fares, amount: t.fare_amount, amount_text: t.fare_amount_text });
  revenueRow(body, 'Revenue recognised', 'recognised',
    { sales: null, amount: t.recognised, amount_text: t.recognised_text });
}

function renderRevenue(r) {
  $('revenue-day').textContent = 'service day ' + r.day;
  $('revenue-total').textContent = r.totals.amount_text;
  $('revenue-summary').textContent = r.totals.sales.toLocaleString() + (r.totals.sales === 1 ? ' sale' : ' sales') +
    ' · ' + r.totals.voids.toLocaleString() + ' voided (' + r.totals.voided_text + ')';
  renderRevenueSplit(r);
  const products = $('revenue-products');
  clear(products);
  for (const p of r.products) revenueRow(products, p.name || p.id, p.id, p);
  const terminals = $('revenue-terminals');
  clear(terminals);
  for (const t of r.terminals) revenueRow(terminals, t.id, t.id, t);
  if (r.terminals.length === 0) {
    const tr = el('tr');
    const td = el('td', 'empty', 'No sales yet.');
    td.colSpan = 3;
    tr.appendChild(td);
    terminals.appendChild(tr);
  }
}

async function loadRevenue() {
  try {
    renderRevenue(await api('/api/revenue'));
  } catch (_) { /* shown again on the next sale or tick */ }
}

// Sales come in bursts: one read shortly after the last of them.
function soonRevenue() {
  clearTimeout(revenueTimer);
  revenueTimer = setTimeout(loadRevenue, 300);
}

async function loadBlocked() {
  try {
    const list = await api('/api/blocked');
    const body = $('blocked-body');
    clear(body);
    for (const b of list) {
      const tr = el('tr');
      tr.dataset.card = b.card;
      tr.appendChild(el('td', '', b.card));
      tr.appendChild(el('td', 'badge-blocked', b.reason));
      tr.appendChild(el('td', '', b.by || ''));
      tr.appendChild(el('td', '', b.at ? dateTime(b.at) : ''));
      tr.addEventListener('click', () => { $('card-input').value = b.card; lookup(b.card); });
      body.appendChild(tr);
    }
    if (list.length === 0) {
      const tr = el('tr');
      const td = el('td', 'empty', 'No blocked cards.');
      td.colSpan = 4;
      tr.appendChild(td);
      body.appendChild(tr);
    }
    $('blocked-count').textContent = list.length ? list.length + ' blocked' : '';
  } catch (_) { /* shown again on the next change */ }
}

async function changeBlock(block) {
  if (!currentCard) return;
  const card = currentCard;
  try {
    if (block) {
      await api('/api/cards/' + encodeURIComponent(card) + '/block', {
        method: 'POST', body: JSON.stringify({ reason: $('block-reason').value }),
      });
      message('Card ' + card + ' blocked.', true);
    } else {
      await api('/api/cards/' + encodeURIComponent(card) + '/unblock', { method: 'POST' });
      message('Card ' + card + ' unblocked.', true);
    }
  } catch (err) {
    message(err.message, false);
  }
  await lookup(card);
  await loadBlocked();
}

// --- live connection -------------------------------------------------------------------------

function connect() {
  const status = $('live-status');
  const es = new EventSource('/api/live');
  es.addEventListener('open', () => { status.textContent = 'live'; status.className = 'pill pill-live'; });
  es.addEventListener('error', () => {
    status.textContent = 'reconnecting…';
    status.className = 'pill pill-down';
    // EventSource retries dropped streams by itself, but gives up after an error status (e.g.
    // while Redis is down): then open a new one shortly. A fresh snapshot replaces everything.
    if (es.readyState === EventSource.CLOSED) setTimeout(reconnect, 3000);
  });
  es.addEventListener('snapshot', (m) => {
    const s = JSON.parse(m.data);
    feed = s.events.slice(-FEED_MAX);
    renderFeed();
    renderCounters(s.counters);
    devices = s.devices;
    renderDevices();
    loadMinutes();
    loadBlocked();
    loadAudit();
    loadRevenue();
  });
  es.addEventListener('events', (m) => addEvents(JSON.parse(m.data)));
  es.addEventListener('counters', (m) => renderCounters(JSON.parse(m.data)));
  es.addEventListener('device-changes', (m) => applyDeviceChanges(JSON.parse(m.data)));
}

// The server pushes only changed rows and the names of devices that are gone.
function deviceKey(d) { return d.kind + '/' + d.device; }

function applyDeviceChanges(c) {
  const byKey = new Map(devices.map((d) => [deviceKey(d), d]));
  for (const k of c.removed || []) byKey.delete(k);
  for (const d of c.changed || []) byKey.set(deviceKey(d), d);
  devices = Array.from(byKey.values()).sort((a, b) =>
    a.kind.localeCompare(b.kind) || a.device.localeCompare(b.device));
  renderDevices();
}

// --- audit trail -----------------------------------------------------------------------------

const AUDIT_LABELS = {
  'login': 'logged in', 'failed-login': 'failed login as', 'logout': 'logged out',
  'logout-everywhere': 'logged out everywhere', 'block': 'blocked', 'unblock': 'unblocked',
  'sessions-revoked': 'sessions ended for', 'void': 'voided a sale',
  'replace': 'replaced a card',
};

async function loadAudit() {
  if (readOnly) return;
  try {
    const list = await api('/api/audit');
    const body = $('audit-body');
    clear(body);
    for (const r of list.slice(0, 50)) {
      const tr = el('tr');
      tr.dataset.action = r.action || '';
      tr.appendChild(el('td', '', r.at ? dateTime(r.at) : ''));
      tr.appendChild(el('td', r.action === 'failed-login' ? 'badge-blocked' : '', AUDIT_LABELS[r.action] || r.action));
      tr.appendChild(el('td', '', r.operator || ''));
      let what = r.card ? 'card ' + r.card + (r.reason ? ' (' + r.reason + ')' : '') : '';
      if (r.action === 'replace') {
        what = 'card ' + (r.card || '?') + ' by ' + (r.reason || '?') + (r.price ? ' · balance ' + r.price : '');
      }
      if (r.product) what += ' · ' + r.product + (r.price ? ' ' + r.price : '');
      tr.appendChild(el('td', '', what));
      tr.appendChild(el('td', '', r.from || ''));
      body.appendChild(tr);
    }
    if (list.length === 0) {
      const tr = el('tr');
      const td = el('td', 'empty', 'Nothing recorded yet.');
      td.colSpan = 5;
      tr.appendChild(td);
      body.appendChild(tr);
    }
  } catch (_) { /* shown again on the next change */ }
}

// After the live stream was refused: back to the login page if the session ended (api() does
// that on 401), otherwise open the stream again.
async function reconnect() {
  try {
    await api('/api/session');
    connect();
  } catch (_) {
    setTimeout(reconnect, 5000);
  }
}

async function loadMinutes() {
  try {
    minutes = await api('/api/charts/minutes');
    renderMinutes();
  } catch (_) { /* the chart stays as it was */ }
}

async function start() {
  let s;
  try {
    s = await api('/api/session');
  } catch (_) {
    window.location.assign('/login');
    return;
  }
  csrf = s.csrf;
  readOnly = s.read_only;
  if (s.wording) wording = s.wording;
  $('operator').textContent = s.operator ? 'signed in as ' + s.operator : 'read-only view';
  $('logout').hidden = !s.operator;
  $('logout-everywhere').hidden = !s.operator;
  $('audit-card').hidden = !s.operator;
  $('login-link').hidden = !!s.operator;
  $('logout').addEventListener('click', async () => {
    try { await api('/logout', { method: 'POST' }); } catch (_) { /* go to the login page anyway */ }
    window.location.assign('/login');
  });
  $('logout-everywhere').addEventListener('click', async () => {
    try { await api('/logout-everywhere', { method: 'POST' }); } catch (_) { /* as above */ }
    window.location.assign('/login');
  });
  $('card-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    message('', true);
    lookup($('card-input').value.trim());
  });
  $('block-btn').addEventListener('click', () => changeBlock(true));
  $('unblock-btn').addEventListener('click', () => changeBlock(false));
  $('void-btn').addEventListener('click', voidSale);
  $('replace-btn').addEventListener('click', replaceCard);
  connect();
  // Redraw relative times ("12s ago") and slide the chart window; no server requests.
  setInterval(() => { renderDevices(); renderMinutes(); expireVoid(); }, 5000);
  // A new service day starts with nothing sold: read the revenue now and then, not only on sales.
  setInterval(loadRevenue, 60000);
  // Charts are drawn at their box's width: redraw when it changes.
  let resized = null;
  window.addEventListener('resize', () => {
    clearTimeout(resized);
    resized = setTimeout(() => { renderGates(); renderMinutes(); }, 150);
  });
}

document.addEventListener('DOMContentLoaded', start);
