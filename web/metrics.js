// Groups the metric names a job reports into charts, from the names alone, so
// new metrics show up without a change here. A name is
//   <base>[_a|_b][.<class>]     e.g. loss_sup_a, lambda_cross, cl_anchors_b.LV
// The model suffix picks the line style (b dashed), the class suffix the
// colour; the base picks the chart and the first word of it the section.
import { colorAt, INK } from './charts.js';

export function parseMetric(name) {
  let [base, cls] = [name, null];
  const dot = name.indexOf('.');
  if (dot >= 0) [base, cls] = [name.slice(0, dot), name.slice(dot + 1)];
  let model = null;
  const m = base.match(/^(.+)_([ab])$/);
  if (m) [base, model] = [m[1], m[2]];
  return { name, base, model, cls };
}

// the terms of the training loss, in the order they are drawn
const LOSS_TERMS = { loss: ['total', INK, 2], loss_sup: ['supervised', '#0072B2'],
  loss_cross: ['cross (CPS)', '#E69F00'], loss_cl: ['contrastive', '#009E73'] };
const PART_COLORS = ['#56B4E9', '#D55E00', '#CC79A7', '#8C6D1F'];

const SECTIONS = {
  training: 'Training losses',
  schedule: 'Schedules',
  dacl: 'DACL internals',
  other: 'Other metrics',
};

const words = (s) => s.replace(/^cl_/, '').replace(/_/g, ' ');

// {key, section, title, yLabel, order} for a parsed metric
function chartOf(p) {
  if (p.base in LOSS_TERMS) return { key: 'loss', section: 'training', title: 'Training loss (solid: model A, dashed: model B)', yLabel: 'loss', order: 0 };
  if (p.base.startsWith('loss_')) return { key: 'loss-parts', section: 'training', title: 'Supervised loss parts', yLabel: 'loss', order: 1 };
  if (p.base === 'lr') return { key: 'lr', section: 'schedule', title: 'Learning rate', yLabel: 'lr', order: 0 };
  if (p.base.startsWith('lambda')) return { key: 'lambda', section: 'schedule', title: 'Loss weights λ', yLabel: 'λ', order: 1 };
  if (p.base.startsWith('cl_')) {
    if (p.base.endsWith('density')) return { key: 'cl-density', section: 'dacl', title: 'Mean densities', yLabel: 'density', order: 2 };
    const t = { cl_anchors: ['Anchors per class', 0], cl_bank: ['Memory bank fill per class', 1] }[p.base];
    return { key: p.base.replace(/_/g, '-'), section: 'dacl', title: t ? t[0] : capital(words(p.base)), yLabel: t ? 'count' : '', order: t ? t[1] : 3 };
  }
  const prefix = p.base.split('_')[0];
  return { key: `other-${prefix}`, section: 'other', title: capital(words(prefix)), yLabel: '', order: 0 };
}

const capital = (s) => s.charAt(0).toUpperCase() + s.slice(1);

// names: the metric names; classColor(cls) the colour of a class.
// Returns [{id, title, charts: [{key, title, yLabel, series: [{name, label, color, model, width}]}]}]
export function groupMetrics(names, classColor) {
  const charts = new Map();
  for (const name of [...names].sort()) {
    const p = parseMetric(name);
    const c = chartOf(p);
    if (!charts.has(c.key)) charts.set(c.key, { ...c, series: [] });
    charts.get(c.key).series.push(p);
  }
  for (const c of charts.values()) {
    let part = 0;
    const partColor = new Map();
    c.series = c.series.map((p) => {
      const model = p.model ? ` ${p.model.toUpperCase()}` : '';
      let label = p.cls ? `${p.cls}${model}` : `${p.base === c.key ? p.base : words(p.base)}${model}`;
      let color, width;
      if (c.key === 'loss') [label, color, width] = [`${LOSS_TERMS[p.base][0]}${model}`, LOSS_TERMS[p.base][1], LOSS_TERMS[p.base][2]];
      else if (p.cls) color = classColor(p.cls);
      else {
        const k = p.base;
        if (!partColor.has(k)) partColor.set(k, PART_COLORS[part++ % PART_COLORS.length]);
        color = partColor.get(k);
        label = `${words(p.base.replace(/^loss_/, ''))}${model}`;
      }
      return { name: p.name, label, color, model: p.model, width, cls: p.cls, base: p.base };
    });
    const termOrder = Object.keys(LOSS_TERMS);
    c.series.sort((a, b) => (c.key === 'loss' ? termOrder.indexOf(a.base) - termOrder.indexOf(b.base) : 0) ||
      (a.cls || '').localeCompare(b.cls || '') || (a.model || '').localeCompare(b.model || ''));
  }
  const out = [];
  for (const [id, title] of Object.entries(SECTIONS)) {
    const cs = [...charts.values()].filter((c) => c.section === id).sort((a, b) => a.order - b.order || a.key.localeCompare(b.key));
    if (cs.length) out.push({ id, title, charts: cs });
  }
  return out;
}

// class names in dataset order, from an evaluation round (or a job's dataset)
export function classNames(rounds) {
  for (const r of rounds || []) if (r.classes) return Object.keys(r.classes);
  return [];
}

export function classColorFn(names) {
  const idx = new Map(names.map((n, i) => [n, i]));
  // a metric's class label is the name with unsafe characters as '_'
  const safe = new Map(names.map((n, i) => [n.replace(/[^A-Za-z0-9_-]/g, '_'), i]));
  return (cls) => colorAt(idx.get(cls) ?? safe.get(cls) ?? (Number.isInteger(+cls) ? +cls - 1 : names.length + hash(cls)));
}

function hash(s) {
  let h = 0;
  for (const ch of String(s)) h = (h * 31 + ch.charCodeAt(0)) | 0;
  return Math.abs(h) % 7;
}
