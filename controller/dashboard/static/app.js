// alsctl dashboard: the fleet and one rig, fed by Server-Sent Events (controller/dashboard/server.py).
// No library: the page must work on a ward network with no way out. Every DOM update of a
// tile whose telemetry is new records its latency from the controller's publish (`stamp`)
// into window.alsLatency, which bench/fleet_load.py reads.
'use strict';

const RANK = {high: 0, medium: 1, low: 2};
window.alsLatency = [];
// when (wall time, s) each rig's tile first showed an alarm: the browser test's "within 1 s"
window.alsAlarmSeen = {};
let me = null;

function clock(ms) {
  if (ms === null || ms === undefined) return '-';
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
function progressText(p) {
  if (!p) return '';
  return p.target ? `${p.what} ${p.done.toFixed(0)} of ${p.target.toFixed(0)} ${p.unit}` : `${p.what} ${p.done.toFixed(0)} ${p.unit}`;
}
function tileClass(t) {
  let c = `tile ${t.status}`;
  if (t.alarm) c += ` alarm-${t.alarm.priority}`;
  return c;
}
function sortKey(t) {
  return [t.alarm ? RANK[t.alarm.priority] ?? 3 : 4, t.alarm ? t.alarm.raised_ms : 0, t.rig_id];
}
function compare(a, b) {
  const x = sortKey(a), y = sortKey(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
  return 0;
}
function mqttLine(text) {
  const m = document.getElementById('mqtt');
  if (m) m.textContent = text === 'connected' ? '' : text;
}

// -- the fleet --------------------------------------------------------------------------
const tiles = new Map();
const shownStamp = new Map();

function renderTile(t) {
  const a = el('a', {class: tileClass(t), href: `/rig/${encodeURIComponent(t.rig_id)}`, id: `tile-${t.rig_id}`,
                     'data-status': t.status, 'data-alarm': t.alarm ? t.alarm.priority : ''});
  a.append(el('span', {class: 'id', text: t.rig_id}),
           el('span', {class: `status ${t.status}`, text: t.status}));
  a.append(el('div', {class: 'phase', text: `${t.phase}${t.interrupted ? ' (holding ' + t.interrupted + ')' : ''}`}));
  const p = t.progress;
  if (p && p.target) {
    const bar = el('div', {class: 'bar'}); const fill = el('div');
    fill.style.width = `${Math.min(100, 100 * p.done / p.target).toFixed(1)}%`;
    bar.append(fill); a.append(bar);
  }
  a.append(el('div', {class: 'progress dim', text: progressText(p)}));
  a.append(el('div', {class: 'left', text: `left ${t.held ? 'held' : clock(t.remaining_ms)}  rig time ${clock(t.t_ms)}`}));
  if (t.alarm) {
    const row = el('div', {class: 'top-alarm'});
    row.append(el('span', {class: `badge ${t.alarm.acknowledged ? 'ack' : t.alarm.priority}`, text: t.alarm.priority.toUpperCase()}),
               ` ${t.alarm.what}` + (t.alarms > 1 ? ` (+${t.alarms - 1})` : ''));
    a.append(row);
  }
  const balance = t.balance_ml === null || t.balance_ml === undefined ? '-' : `${t.balance_ml >= 0 ? '+' : ''}${t.balance_ml.toFixed(0)} mL`;
  a.append(el('div', {class: 'dim', text: `balance ${balance}  updated ${t.age_s === null ? '-' : t.age_s.toFixed(1) + ' s'} ago`}));
  if (t.outcome) a.append(el('div', {class: 'outcome', text: `outcome ${t.outcome}`}));
  return a;
}

function showTiles(list) {
  for (const t of list) {
    const before = tiles.get(t.rig_id);
    if (t.alarm && !(before && before.alarm)) window.alsAlarmSeen[t.rig_id] = null;  // set once drawn
    tiles.set(t.rig_id, t);
  }
  const box = document.getElementById('tiles');
  const sorted = [...tiles.values()].sort(compare);
  const order = sorted.map((t) => t.rig_id).join(',');
  const updated = new Set(list.map((t) => t.rig_id));
  if (box.dataset.order !== order) {
    box.replaceChildren(...sorted.map(renderTile));
    box.dataset.order = order;
  } else {
    for (const t of list) {
      const old = document.getElementById(`tile-${t.rig_id}`);
      if (old) old.replaceWith(renderTile(t));
    }
  }
  for (const t of list) {
    if (t.stamp && shownStamp.get(t.rig_id) !== t.stamp && updated.has(t.rig_id)) {
      shownStamp.set(t.rig_id, t.stamp);
      window.alsLatency.push(Date.now() / 1000 - t.stamp);
    }
  }
  for (const [rig, seen] of Object.entries(window.alsAlarmSeen)) {
    if (seen === null) window.alsAlarmSeen[rig] = Date.now() / 1000;
  }
  document.getElementById('empty').hidden = tiles.size > 0;
  document.getElementById('count').textContent = `${tiles.size} rig${tiles.size === 1 ? '' : 's'}`;
  document.body.dataset.rigs = tiles.size;
}

async function fleetPage() {
  const first = await (await fetch('/api/fleet')).json();
  showTiles(first.tiles); mqttLine(first.mqtt);
  const stream = new EventSource('/api/stream');
  stream.addEventListener('tiles', (e) => { const m = JSON.parse(e.data); mqttLine(m.mqtt); showTiles(m.tiles); });
}

// -- one rig ----------------------------------------------------------------------------
const rigId = decodeURIComponent(location.pathname.split('/').pop());
let trend = [];
let names = [];
let pending = null;

function row(k, v) { return el('tr', {}, el('td', {text: k}), el('td', {text: v})); }

function showRig(d) {
  document.getElementById('rig-id').textContent = d.rig_id;
  const st = document.getElementById('rig-status');
  st.textContent = d.status; st.className = `status ${d.status}`;
  document.body.dataset.status = d.status;
  document.body.dataset.phase = d.phase;
  const v = d.volumes || {};
  const sum = el('table', {}, el('tbody', {},
    row('phase', `${d.phase}${d.interrupted ? ' (holding ' + d.interrupted + ')' : ''}`),
    row('progress', progressText(d.progress)),
    row('time left', clock(d.remaining_ms)), row('rig time', clock(d.t_ms)),
    row('prescription', d.prescription || '-'),
    row('volumes', `exchanged ${(v.exchanged_ml ?? 0).toFixed(0)} mL, processed ${(v.processed_ml ?? 0).toFixed(0)} mL, filtrate ${(v.filtrate_ml ?? 0).toFixed(0)} mL`),
    row('net balance', d.balance_ml === null || d.balance_ml === undefined ? '-' : `${d.balance_ml >= 0 ? '+' : ''}${d.balance_ml.toFixed(0)} mL`),
    row('outcome', d.outcome || 'running')));
  document.getElementById('summary').replaceChildren(sum);
  document.getElementById('audio').textContent = d.audio_paused ? 'audio paused' : '';
  const alarms = document.getElementById('alarms');
  alarms.replaceChildren(...(d.alarm_list.length ? d.alarm_list.map((a) => el('div', {class: `alarm ${a.priority}`, 'data-alarm': a.alarm},
    el('span', {class: `badge ${a.acknowledged ? 'ack' : a.priority}`, text: a.priority.toUpperCase()}),
    el('b', {text: ` ${a.what}`}), el('span', {class: 'dim', text: ` [${a.alarm}] since ${clock(a.raised_ms)}`}),
    el('div', {text: `rig: ${a.response}`}),
    el('div', {text: `now: ${a.present ? 'still present' : 'condition gone'}${a.acknowledged ? '; acknowledged' : '; not acknowledged'}${a.detail && a.present ? ': ' + a.detail : ''}`}),
    el('div', {class: 'dim', text: `next: ${a.next}`}))) : [el('p', {class: 'dim', text: 'no active alarm'})]));
  const cmds = document.getElementById('commands');
  cmds.replaceChildren(...d.commands.map((c) => {
    const b = el('button', {id: `cmd-${c}`, text: c.replace(/_/g, ' ')});
    b.disabled = !d.allowed.includes(c);
    b.onclick = () => ask(c, d);
    return b;
  }));
  const log = document.querySelector('#log tbody');
  log.replaceChildren(...d.log.slice().reverse().map((e) => el('tr', {class: e.priority},
    el('td', {text: clock(e.t_ms)}), el('td', {text: e.text}))));
  names = d.trend_names;
  const last = trend.length ? trend[trend.length - 1][0] : -1;
  if (d.trend.length && d.trend[d.trend.length - 1][0] < last) trend = d.trend;  // a new session
  else trend = trend.concat(d.trend.filter((p) => p[0] > last));
  const cut = (trend.length ? trend[trend.length - 1][0] : 0) - 30 * 60 * 1000;
  while (trend.length && trend[0][0] < cut) trend.shift();
  draw('pressures', ['access', 'pre_separator', 'return', 'map'], 'mmHg');
  draw('flows', ['blood', 'plasma', 'loop'], 'mL/min');
  draw('volumes', ['exchanged_ml', 'processed_ml', 'balance_ml'], 'mL');
}

const COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728'];
function draw(id, keys, unit) {
  const c = document.getElementById(id); const g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  const idx = keys.map((k) => names.indexOf(k) + 1);
  if (trend.length < 2) { g.fillText('waiting for telemetry', 10, 20); return; }
  let lo = Infinity, hi = -Infinity;
  for (const r of trend) for (const i of idx) { lo = Math.min(lo, r[i]); hi = Math.max(hi, r[i]); }
  if (hi === lo) { hi += 1; lo -= 1; }
  const t0 = trend[0][0], t1 = trend[trend.length - 1][0];
  const L = 50, R = c.width - 140, T = 10, B = c.height - 20;
  const x = (t) => L + (R - L) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => B - (B - T) * (v - lo) / (hi - lo);
  g.strokeStyle = '#ccc'; g.strokeRect(L, T, R - L, B - T);
  g.fillStyle = '#555'; g.fillText(`${hi.toFixed(0)} ${unit}`, 2, T + 8); g.fillText(lo.toFixed(0), 2, B);
  g.fillText(clock(t0), L, c.height - 4); g.fillText(clock(t1), R - 40, c.height - 4);
  keys.forEach((k, n) => {
    g.strokeStyle = COLOURS[n]; g.beginPath();
    trend.forEach((r, j) => { const p = [x(r[0]), y(r[idx[n]])]; if (j) g.lineTo(...p); else g.moveTo(...p); });
    g.stroke(); g.fillStyle = COLOURS[n]; g.fillText(k, R + 10, T + 12 + 14 * n);
  });
}

function ask(command, d) {
  pending = command;
  document.getElementById('confirm-text').textContent = `Send "${command.replace(/_/g, ' ')}" to ${d.rig_id}, as ${me ? me.user : '?'}?`;
  const flow = document.getElementById('flow-row');
  flow.hidden = command !== 'set_blood_flow';
  if (!flow.hidden) document.getElementById('flow').value = d.blood_flow_ml_min ?? '';
  document.getElementById('confirm').showModal();
}

async function send() {
  const command = pending; pending = null;
  document.getElementById('confirm').close();
  const body = {};
  if (command === 'set_blood_flow') body.blood_flow_ml_min = Number(document.getElementById('flow').value);
  const answer = document.getElementById('answer');
  answer.textContent = `${command}: sent`; answer.className = '';
  const r = await fetch(`/api/rigs/${encodeURIComponent(rigId)}/commands/${command}`, {
    method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me ? me.token : ''}, body: JSON.stringify(body)});
  const result = r.ok ? await r.json() : {accepted: false, result: await r.text()};
  answer.textContent = `${command}: ${result.result}`;
  answer.className = result.accepted ? '' : 'bad';
  answer.dataset.command = command; answer.dataset.accepted = String(!!result.accepted);
}

async function rigPage() {
  document.getElementById('confirm-yes').onclick = send;
  document.getElementById('confirm-no').onclick = () => { pending = null; document.getElementById('confirm').close(); };
  const r = await fetch(`/api/rigs/${encodeURIComponent(rigId)}`);
  if (r.ok) showRig(await r.json()); else document.getElementById('summary').textContent = await r.text();
  const stream = new EventSource(`/api/stream?rig=${encodeURIComponent(rigId)}`);
  stream.addEventListener('tiles', (e) => mqttLine(JSON.parse(e.data).mqtt));
  stream.addEventListener('rig', (e) => showRig(JSON.parse(e.data)));
}

(async () => {
  const r = await fetch('/api/me');
  if (r.ok) { me = await r.json(); document.getElementById('me').textContent = `signed in: ${me.user}`; }
  if (document.body.dataset.page === 'fleet') await fleetPage(); else await rigPage();
})();
