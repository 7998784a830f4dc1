// Line charts on uPlot, one <figure> each, with a note when the server folded
// the series into buckets. Class colours come from one palette so a class
// has the same colour in every chart of a page.
import uPlot from './vendor/uplot/uPlot.esm.js';
import { el } from './format.js';

// Okabe–Ito, readable with the common colour-vision deficiencies
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#D55E00', '#56B4E9', '#8C6D1F', '#332288',
  '#117733', '#AA4499'];
export const colorAt = (i) => PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
export const INK = '#1d2733';

const DASH_B = [6, 4]; // model b is dashed everywhere
// iterations are whole numbers: no 52.5 on the x axis
const STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 25000, 50000,
  100000, 200000, 500000, 1000000];

export class Chart {
  // spec: {key, title, yLabel, series: [{label, color, model, width}], yRange}
  constructor(host, spec) {
    this.spec = spec;
    this.note = el('p', { class: 'chart-note', hidden: true });
    this.plotHost = el('div', { class: 'chart-plot' });
    this.fig = el('figure', { class: 'chart', dataset: { chart: spec.key, points: '0' } },
      el('figcaption', {}, spec.title), this.plotHost, this.note);
    host.append(this.fig);
    this.series = spec.series.map((s) => ({ ...s }));
    this.data = [[], ...this.series.map(() => [])];
    this.plot = null;
    this.resizeObs = new ResizeObserver(() => this.resize());
    this.resizeObs.observe(this.plotHost);
  }

  width() {
    return Math.max(240, Math.floor(this.plotHost.clientWidth || this.fig.clientWidth || 600));
  }

  opts() {
    const w = this.width();
    return {
      width: w,
      height: w < 500 ? 200 : 240,
      scales: { x: { time: false }, y: this.spec.yRange ? { range: this.spec.yRange } : {} },
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      axes: [
        { stroke: '#5b6675', grid: { stroke: '#e6e9ee' }, ticks: { stroke: '#d5dae1' }, label: 'iteration', incrs: STEP_INCRS,
          labelSize: 20, font: '12px system-ui, sans-serif', labelFont: '12px system-ui, sans-serif' },
        { stroke: '#5b6675', grid: { stroke: '#e6e9ee' }, ticks: { stroke: '#d5dae1' }, label: this.spec.yLabel || '',
          labelSize: 22, size: 56, font: '12px system-ui, sans-serif', labelFont: '12px system-ui, sans-serif' },
      ],
      series: [{ label: 'iteration' }, ...this.series.map((s) => ({
        label: s.label,
        stroke: s.color,
        width: s.width || 1.5,
        dash: s.model === 'b' ? DASH_B : undefined,
        spanGaps: true,
        points: { show: s.points ?? false, size: 5 },
        value: (u, v) => (v === null || v === undefined ? '–' : fmtShort(v)),
      }))],
    };
  }

  // columns: [{label, step: [...], value: [...]}] in the order of spec.series
  setColumns(columns, note) {
    const tables = columns.map((c) => [c.step || [], c.value || []]);
    const joined = tables.length ? uPlot.join(tables) : [[]];
    this.data = joined;
    const n = Math.max(0, ...columns.map((c) => (c.step || []).length));
    this.fig.dataset.points = String(n);
    this.note.hidden = !note;
    this.note.textContent = note || '';
    if (!this.plot) {
      if (!this.plotHost.isConnected) return;
      this.plot = new uPlot(this.opts(), this.data, this.plotHost);
    } else {
      this.plot.setData(this.data);
    }
  }

  resize() {
    if (!this.plot) return;
    const w = this.width();
    if (Math.abs(w - this.plot.width) > 2) this.plot.setSize({ width: w, height: w < 500 ? 200 : 240 });
  }

  destroy() {
    this.resizeObs.disconnect();
    if (this.plot) this.plot.destroy();
    this.fig.remove();
  }
}

function fmtShort(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return Number(v.toPrecision(4)).toString();
}

// The note of a chart whose lines the server folded into buckets (it
// reports, per series, how many points it had and how many it folded).
export function foldNote(series) {
  let points = 0, shown = 0;
  for (const s of series) {
    if (!s || !s.folded) continue;
    points = Math.max(points, s.points);
    shown = Math.max(shown, s.step.length);
  }
  if (!points) return '';
  return `More points than pixels: ${points.toLocaleString()} points per line drawn as ${shown.toLocaleString()} ` +
    '(the server keeps each bucket’s min and max). The metrics CSV has every point.';
}
