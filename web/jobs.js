// #/jobs: every job with its progress, a status filter, cancel and delete,
// picking jobs to compare, and the form that submits a new one.
import { api, ApiError, FINAL, STATUSES } from './api.js';
import { el, clear, fmtDuration, fmtTime, elapsed, fmtDice, statusBadge, progressBar } from './format.js';

const POLL_MS = 2000;

export function jobsView(root, { navigate, query }) {
  const status = STATUSES.includes(query.get('status')) ? query.get('status') : '';
  const picked = new Set();
  let timer = null, stopped = false;

  const filter = el('select', { id: 'status-filter', onchange: () => navigate(filter.value ? `#/jobs?status=${filter.value}` : '#/jobs') },
    el('option', { value: '' }, 'All statuses'), STATUSES.map((s) => el('option', { value: s, selected: s === status }, s)));
  const compareBtn = el('button', { type: 'button', class: 'btn', disabled: true,
    onclick: () => navigate(`#/compare/${[...picked].join(',')}`) }, 'Compare selected');
  const msg = el('p', { class: 'flash', role: 'status', 'aria-live': 'polite' });
  const tbody = el('tbody');
  const empty = el('p', { class: 'empty', hidden: true });
  const table = el('div', { class: 'table-wrap' }, el('table', { class: 'jobs', id: 'jobs-table' },
    el('caption', { class: 'sr-only' }, 'Training jobs, newest first'),
    el('thead', {}, el('tr', {},
      el('th', { scope: 'col', class: 'col-pick' }, el('span', { class: 'sr-only' }, 'Compare')),
      ['Job', 'Method', 'Dataset', 'Status', 'Progress', 'Best Dice', 'Started', 'Duration'].map((h) =>
        el('th', { scope: 'col', class: `col-${h.toLowerCase().replace(' ', '-')}` }, h)),
      el('th', { scope: 'col', class: 'col-actions' }, el('span', { class: 'sr-only' }, 'Actions')))),
    tbody));

  root.append(
    el('div', { class: 'page-head' },
      el('h1', { tabindex: -1 }, 'Training jobs'),
      el('div', { class: 'toolbar' },
        el('label', { for: 'status-filter', class: 'inline-label' }, 'Show'), filter, compareBtn,
        el('button', { type: 'button', class: 'btn btn-primary', onclick: () => {
          document.getElementById('new-job').scrollIntoView({ behavior: 'smooth' });
          document.getElementById('f-name').focus({ preventScroll: true });
        } }, 'New job'))),
    msg, table, empty, submitForm(navigate));

  function updateCompare() {
    compareBtn.disabled = picked.size < 2;
    compareBtn.textContent = picked.size ? `Compare selected (${picked.size})` : 'Compare selected';
  }

  async function act(job, what) {
    const verb = what === 'cancel' ? 'Cancel' : 'Delete';
    const q = what === 'cancel'
      ? `Cancel job ${job.id} “${job.name}”? A running job checkpoints and stops.`
      : `Delete job ${job.id} “${job.name}” with its checkpoints and metrics? This cannot be undone.`;
    if (!window.confirm(q)) return;
    try {
      if (what === 'cancel') await api(`/jobs/${job.id}/cancel`, { method: 'POST' });
      else await api(`/jobs/${job.id}`, { method: 'DELETE' });
      msg.className = 'flash flash-ok';
      msg.textContent = `${verb}: job ${job.id} ${what === 'cancel' ? 'is being canceled' : 'was deleted'}.`;
      picked.delete(job.id);
      updateCompare();
      refresh();
    } catch (e) {
      msg.className = 'flash flash-error';
      msg.textContent = `${verb} job ${job.id}: ${e.message}`;
    }
  }

  function row(j) {
    const method = j.method ?? '–';
    const dataset = j.dataset?.path ? `${j.dataset.path}${j.dataset.labeled != null ? ` · ${j.dataset.labeled} labeled` : ''}` : '–';
    const pick = el('input', { type: 'checkbox', 'aria-label': `Compare job ${j.id}`, checked: picked.has(j.id),
      onchange: (e) => { e.target.checked ? picked.add(j.id) : picked.delete(j.id); updateCompare(); } });
    const actions = el('div', { class: 'actions' },
      !FINAL.has(j.status)
        ? el('button', { type: 'button', class: 'btn btn-small', onclick: () => act(j, 'cancel') }, 'Cancel')
        : el('button', { type: 'button', class: 'btn btn-small btn-danger', onclick: () => act(j, 'delete') }, 'Delete'));
    return el('tr', { dataset: { job: j.id, status: j.status } },
      el('td', { class: 'col-pick' }, pick),
      el('td', { class: 'col-job' }, el('a', { href: `#/jobs/${j.id}` }, j.name || `job ${j.id}`),
        el('span', { class: 'job-id' }, ` #${j.id}`)),
      el('td', { class: 'col-method' }, el('span', { class: `method method-${method}` }, method)),
      el('td', { class: 'col-dataset' }, dataset),
      el('td', { class: 'col-status' }, statusBadge(j.status),
        j.error ? el('span', { class: 'error-hint', title: j.error }, ' ⚠') : null),
      el('td', { class: 'col-progress' }, progressBar(j)),
      el('td', { class: 'col-best-dice num' }, fmtDice(j.best?.mean_dice)),
      el('td', { class: 'col-started' }, fmtTime(j.started_at)),
      el('td', { class: 'col-duration' }, fmtDuration(elapsed(j))),
      el('td', { class: 'col-actions' }, actions));
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const data = await api(`/jobs?limit=200${status ? `&status=${status}` : ''}`);
      if (stopped) return;
      const focused = document.activeElement?.closest('tr')?.dataset.job;
      const focusIdx = focused ? [...(document.activeElement.closest('tr').querySelectorAll('a,button,input'))]
        .indexOf(document.activeElement) : -1;
      clear(tbody).append(...data.jobs.map(row));
      if (focused && focusIdx >= 0) tbody.querySelector(`tr[data-job="${focused}"]`)?.querySelectorAll('a,button,input')[focusIdx]?.focus();
      empty.hidden = data.jobs.length > 0;
      empty.textContent = status ? `No ${status} jobs.` : 'No jobs yet. Submit one with the form below.';
      table.hidden = data.jobs.length === 0;
    } catch (e) {
      if (stopped) return;
      msg.className = 'flash flash-error';
      msg.textContent = `Cannot list jobs: ${e.message}`;
    }
    if (!stopped) timer = setTimeout(refresh, POLL_MS);
  }
  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}

// ------------------------------------------------------------ submit form --

// The few fields most runs change; anything else goes in the JSON box, which
// wins over the fields. Each input names its config path, so the server's
// error (field "train.lr") lands next to it.
const FIELDS = [
  { path: 'name', label: 'Name', type: 'text', placeholder: 'e.g. acdc-7-labeled' },
  { path: 'dataset.path', label: 'Dataset', type: 'text', placeholder: 'phantom:cardiac', list: 'datasets' },
  { path: 'dataset.labeled', label: 'Labeled cases', type: 'number', placeholder: 'default', min: 1 },
  { path: 'method.name', label: 'Method', type: 'select', options: ['', 'dacl', 'cps', 'supervised'] },
  { path: 'train.iterations', label: 'Iterations', type: 'number', placeholder: '30000', min: 1 },
  { path: 'train.lr', label: 'Learning rate', type: 'number', placeholder: '0.01', step: 'any' },
  { path: 'train.val_every', label: 'Validate every', type: 'number', placeholder: '200', min: 1 },
];

const fieldId = (path) => `f-${path.replace(/\./g, '-')}`;

function setPath(obj, path, v) {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) o = o[k] && typeof o[k] === 'object' ? o[k] : (o[k] = {});
  o[keys.at(-1)] = v;
}

function merge(a, b) {
  for (const [k, v] of Object.entries(b)) {
    if (v && typeof v === 'object' && !Array.isArray(v) && a[k] && typeof a[k] === 'object') merge(a[k], v);
    else a[k] = v;
  }
  return a;
}

function submitForm(navigate) {
  const errs = new Map();
  const errorFor = (path) => {
    const e = el('p', { class: 'field-error', id: `${fieldId(path)}-error`, role: 'alert', hidden: true });
    errs.set(path, e);
    return e;
  };
  const inputs = new Map();
  const datalist = el('datalist', { id: 'datasets' });
  const rows = FIELDS.map((f) => {
    const id = fieldId(f.path);
    const input = f.type === 'select'
      ? el('select', { id, name: f.path }, f.options.map((o) => el('option', { value: o }, o || 'default (dacl)')))
      : el('input', { id, name: f.path, type: f.type, placeholder: f.placeholder, min: f.min, step: f.step, list: f.list,
        inputmode: f.type === 'number' ? 'decimal' : undefined, 'aria-describedby': `${id}-path ${id}-error` });
    inputs.set(f.path, input);
    return el('div', { class: 'field', dataset: { field: f.path } },
      el('label', { for: id }, f.label), input, el('code', { class: 'path', id: `${id}-path` }, f.path), errorFor(f.path));
  });
  const json = el('textarea', { id: 'f-json', rows: 5, spellcheck: 'false', 'aria-describedby': 'f-json-error f-json-help',
    placeholder: '{\n  "method": {"name": "dacl", "tau": 0.4},\n  "train": {"batch": 24, "patch": [256, 256]}\n}' });
  const jsonErr = el('p', { class: 'field-error', id: 'f-json-error', role: 'alert', hidden: true });
  const formMsg = el('p', { class: 'flash', role: 'status', 'aria-live': 'polite' });
  const submit = el('button', { type: 'submit', class: 'btn btn-primary' }, 'Submit job');

  function clearErrors() {
    for (const e of [...errs.values(), jsonErr]) { e.hidden = true; e.textContent = ''; }
    for (const i of [...inputs.values(), json]) i.removeAttribute('aria-invalid');
    formMsg.textContent = '';
    formMsg.className = 'flash';
  }

  function showError(err) {
    const field = err.field;
    if (field && errs.has(field)) {
      const e = errs.get(field);
      e.textContent = err.message;
      e.hidden = false;
      inputs.get(field).setAttribute('aria-invalid', 'true');
      inputs.get(field).focus();
      return;
    }
    // a field of the pasted JSON (or none): shown by the JSON box, naming it
    jsonErr.textContent = field ? `${field}: ${err.message.replace(`${field}: `, '')}` : err.message;
    jsonErr.hidden = false;
    json.setAttribute('aria-invalid', 'true');
    json.focus();
  }

  async function onSubmit(ev) {
    ev.preventDefault();
    clearErrors();
    const cfg = {};
    for (const f of FIELDS) {
      const v = inputs.get(f.path).value.trim();
      if (v === '') continue;
      setPath(cfg, f.path, f.type === 'number' ? Number(v) : v);
    }
    if (json.value.trim()) {
      let pasted;
      try {
        pasted = JSON.parse(json.value);
      } catch (e) {
        showError({ field: null, message: `Not valid JSON: ${e.message}` });
        return;
      }
      if (!pasted || typeof pasted !== 'object' || Array.isArray(pasted)) {
        showError({ field: null, message: 'The pasted config must be a JSON object.' });
        return;
      }
      merge(cfg, pasted);
    }
    submit.disabled = true;
    try {
      const job = await api('/jobs', { method: 'POST', body: cfg });
      formMsg.className = 'flash flash-ok';
      formMsg.textContent = `Job ${job.id} submitted.`;
      navigate(`#/jobs/${job.id}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 400) showError(e);
      else { formMsg.className = 'flash flash-error'; formMsg.textContent = `Not submitted: ${e.message}`; }
    } finally {
      submit.disabled = false;
    }
  }

  api('/datasets').then((d) => datalist.append(...d.datasets.map((x) => el('option', { value: x.path })))).catch(() => {});

  return el('section', { class: 'panel', id: 'new-job', 'aria-labelledby': 'new-job-title' },
    el('h2', { id: 'new-job-title' }, 'Submit a job'),
    el('p', { class: 'muted' }, 'Empty fields keep their defaults (the paper’s values). The JSON box is merged over the fields; ' +
      'the daemon checks everything and names the field it refuses.'),
    el('form', { id: 'submit-form', novalidate: true, onsubmit: onSubmit },
      el('div', { class: 'fields' }, rows), datalist,
      el('div', { class: 'field field-wide' },
        el('label', { for: 'f-json' }, 'Config JSON ', el('span', { class: 'muted' }, '(optional)')),
        el('p', { class: 'help', id: 'f-json-help' }, 'Any part of a job config: name, dataset, method, train.'),
        json, jsonErr),
      el('div', { class: 'form-actions' }, submit, formMsg)));
}
