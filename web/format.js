// DOM building and number/time formatting shared by the views.

// el('a', {href: '#/', class: 'x', onclick: fn}, 'text', child...): no innerHTML,
// so names and messages from the daemon are always text.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'style' && typeof v === 'object') Object.assign(e.style, v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

export function fmtDuration(s) {
  if (s === null || s === undefined || !isFinite(s)) return '–';
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (h) return `${h} h ${String(m).padStart(2, '0')} min`;
  if (m) return `${m} min ${String(sec).padStart(2, '0')} s`;
  return `${sec} s`;
}

export function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  const time = d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  return sameDay ? time : `${d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })} ${time}`;
}

// seconds from start to end (or now while it runs)
export function elapsed(job) {
  if (!job.started_at) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
  return (end - Date.parse(job.started_at)) / 1000;
}

export function fmtNum(v, digits = 3) {
  if (v === null || v === undefined || !isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return Number(v.toFixed(digits)).toString();
}

export const fmtDice = (v) => (v === null || v === undefined ? '–' : v.toFixed(3));

export function statusBadge(status) {
  return el('span', { class: `badge badge-${status}` }, status);
}

// a progress bar with its text (percent, ETA) readable by screen readers
export function progressBar(job) {
  const pct = Math.round(100 * (job.progress || 0));
  let eta = job.status === 'running' && job.eta_s !== null && job.eta_s !== undefined ? ` · ETA ${fmtDuration(job.eta_s)}` : '';
  if (job.status === 'queued' && Number.isInteger(job.queue_position)) eta = ` · ${ordinal(job.queue_position + 1)} in queue`;
  const label = `${job.iteration ?? 0} / ${job.total ?? '?'} iterations (${pct}%)${eta}`;
  const bar = el('div', { class: 'bar-fill' });
  bar.style.width = `${pct}%`;
  return el('div', { class: `progress progress-${job.status}`, title: label },
    el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct,
      'aria-label': label }, bar),
    el('span', { class: 'progress-text' }, `${pct}%${eta}`));
}

function ordinal(n) {
  const s = n % 100 >= 11 && n % 100 <= 13 ? 'th' : { 1: 'st', 2: 'nd', 3: 'rd' }[n % 10] || 'th';
  return `${n}${s}`;
}
