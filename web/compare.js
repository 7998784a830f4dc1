// #/compare/1,2,3: validation Dice of several jobs on one chart (mean, or one
// class), and their configs side by side with the differing rows marked.
import { api, FINAL } from './api.js';
import { Chart, colorAt } from './charts.js';
import { el, clear, statusBadge, fmtDice } from './format.js';
import { classNames } from './metrics.js';

function flatten(obj, prefix = '', out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, key, out);
    else out[key] = JSON.stringify(v);
  }
  return out;
}

export function compareView(root, { ids, navigate }) {
  let stopped = false;
  const picker = el('fieldset', { class: 'picker' }, el('legend', {}, 'Jobs to compare (two or more)'));
  const chartHost = el('div', { class: 'chart-grid chart-grid-1' });
  const classSel = el('select', { id: 'compare-class' });
  const onlyDiff = el('input', { type: 'checkbox', id: 'only-diff' });
  const cfgHost = el('div', { class: 'table-wrap' });
  root.append(
    el('div', { class: 'page-head' },
      el('div', {}, el('p', { class: 'crumb' }, el('a', { href: '#/jobs' }, '← All jobs')), el('h1', { tabindex: -1 }, 'Compare jobs'))),
    el('section', { class: 'panel' }, picker),
    el('section', { class: 'panel', 'aria-labelledby': 'cmp-dice' },
      el('div', { class: 'section-head' }, el('h2', { id: 'cmp-dice' }, 'Validation Dice'),
        el('div', { class: 'toolbar' }, el('label', { for: 'compare-class', class: 'inline-label' }, 'Class'), classSel)),
      el('p', { class: 'muted small' }, 'Each round: the better of the two models.'), chartHost),
    el('section', { class: 'panel', 'aria-labelledby': 'cmp-cfg' },
      el('div', { class: 'section-head' }, el('h2', { id: 'cmp-cfg' }, 'Configurations'),
        el('div', { class: 'toolbar' }, onlyDiff, el('label', { for: 'only-diff' }, 'Only differences'))),
      cfgHost));

  let jobs = [], evals = new Map(), chart = null, timer = null;

  async function load() {
    const list = await api('/jobs?limit=200');
    if (stopped) return;
    const chosen = new Set(ids);
    clear(picker).append(el('legend', {}, 'Jobs to compare (two or more)'),
      el('div', { class: 'picker-list' }, list.jobs.map((j) => el('label', { class: 'pick' },
        el('input', { type: 'checkbox', value: j.id, checked: chosen.has(j.id),
          onchange: () => {
            const sel = [...picker.querySelectorAll('input:checked')].map((i) => i.value);
            navigate(`#/compare/${sel.join(',')}`);
          } }),
        ` ${j.name || 'job'} #${j.id} `, statusBadge(j.status)))));
    if (ids.filter((id) => list.jobs.some((j) => j.id === id)).length < 2) {
      clear(chartHost).append(el('p', { class: 'empty' }, 'Pick at least two jobs above.'));
      clear(cfgHost);
      return;
    }
    await refresh();
  }

  // the chosen jobs' rounds and configs (the list leaves configs out); again
  // every few seconds while one of them is still training
  async function refresh() {
    clearTimeout(timer);
    jobs = (await Promise.all(ids.map((id) => api(`/jobs/${id}`).catch(() => null)))).filter(Boolean);
    if (stopped) return;
    const evs = await Promise.all(jobs.map((j) => api(`/jobs/${j.id}/evaluation`).catch(() => ({ rounds: [] }))));
    if (stopped) return;
    evals = new Map(jobs.map((j, i) => [j.id, evs[i].rounds || []]));
    const classes = [...new Set(jobs.flatMap((j) => classNames(evals.get(j.id))))];
    const cur = classSel.value || 'mean';
    clear(classSel).append(el('option', { value: 'mean' }, 'mean of classes'),
      classes.map((c) => el('option', { value: c, selected: c === cur }, c)));
    classSel.onchange = drawChart;
    drawChart();
    drawConfigs();
    if (jobs.some((j) => !FINAL.has(j.status))) timer = setTimeout(() => refresh().catch(() => {}), 5000);
  }

  function drawChart() {
    const cls = classSel.value || 'mean';
    chart?.destroy();
    chart = new Chart(chartHost, {
      key: 'compare-dice', title: `Validation Dice: ${cls === 'mean' ? 'mean of the classes' : cls}`, yLabel: 'Dice', yRange: [0, 1],
      series: jobs.map((j, i) => ({ label: `${j.name || 'job'} #${j.id}`, color: colorAt(i), width: 2, points: true })),
    });
    chart.setColumns(jobs.map((j) => {
      const best = new Map(); // iteration -> the better model's value
      for (const r of evals.get(j.id)) {
        const v = cls === 'mean' ? r.mean_dice : r.classes?.[cls]?.dice;
        if (v === null || v === undefined) continue;
        best.set(r.iteration, Math.max(best.get(r.iteration) ?? -1, v));
      }
      const steps = [...best.keys()].sort((a, b) => a - b);
      return { step: steps, value: steps.map((s) => best.get(s)) };
    }));
  }

  function drawConfigs() {
    const flat = jobs.map((j) => flatten(j.config));
    const keys = [...new Set(flat.flatMap((f) => Object.keys(f)))];
    const rows = keys.map((k) => {
      const vals = flat.map((f) => f[k]);
      const differs = vals.some((v) => v !== vals[0]);
      return el('tr', { class: differs ? 'diff' : 'same', dataset: { key: k } },
        el('th', { scope: 'row' }, el('code', {}, k), differs ? el('span', { class: 'sr-only' }, ' (differs)') : ''),
        vals.map((v) => el('td', {}, v === undefined ? '–' : v)));
    });
    const ndiff = rows.filter((r) => r.classList.contains('diff')).length;
    const table = el('table', { class: 'config-table', id: 'config-compare' },
      el('caption', {}, `${ndiff} of ${keys.length} settings differ`),
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Setting'),
        jobs.map((j, i) => {
          const sw = el('span', { class: 'swatch', 'aria-hidden': 'true' });
          sw.style.background = colorAt(i);
          const best = j.best ? ` · best ${fmtDice(j.best.mean_dice)}` : '';
          return el('th', { scope: 'col' }, sw, el('a', { href: `#/jobs/${j.id}` }, `${j.name || 'job'} #${j.id}`),
            el('span', { class: 'muted small' }, best));
        }))),
      el('tbody', {}, rows));
    table.classList.toggle('only-diff', onlyDiff.checked);
    onlyDiff.onchange = () => table.classList.toggle('only-diff', onlyDiff.checked);
    clear(cfgHost).append(table);
  }

  load().catch((e) => { if (!stopped) root.append(el('p', { class: 'flash flash-error' }, `Cannot compare: ${e.message}`)); });
  return () => { stopped = true; clearTimeout(timer); chart?.destroy(); };
}
