// #/jobs/ID: one job, live. The page opens the event stream first (events
// that arrive meanwhile are held), then loads the metric series (bucketed to
// the charts' width when longer) and the validation rounds, then applies the
// held events newer than what it loaded. When the stream fails it polls.
import { api, FINAL } from './api.js';
import { Chart, foldNote, INK } from './charts.js';
import { el, clear, fmtDuration, fmtTime, elapsed, fmtNum, fmtDice, statusBadge, progressBar } from './format.js';
import { groupMetrics, classNames, classColorFn } from './metrics.js';

const POLL_MS = 3000;
const REDRAW_MS = 400;

export function jobView(root, { id, navigate }) {
  const S = {
    job: null, series: {}, rounds: [], last: -1, charts: new Map(), held: [], loaded: false,
    es: null, poll: null, redraw: null, stopped: false, deleting: false, finalTimer: null, names: '', refetchAt: 0, classes: [], sampleIter: -1,
  };
  const head = el('div', { class: 'page-head' });
  const summary = el('div', { class: 'summary' });
  const live = el('p', { class: 'live muted', role: 'status', 'aria-live': 'polite' });
  const sections = el('div', { class: 'sections' });
  const diceHost = el('div', { class: 'chart-grid' });
  const finalHost = el('div', { class: 'final' });
  const samplesHost = el('div', { class: 'samples' });
  const configPre = el('pre', { class: 'config', tabindex: 0 });
  root.append(head, summary, live,
    el('section', { class: 'panel', 'aria-labelledby': 'val-title' },
      el('h2', { id: 'val-title' }, 'Validation'), diceHost, finalHost),
    sections,
    el('section', { class: 'panel', 'aria-labelledby': 'samples-title' },
      el('h2', { id: 'samples-title' }, 'Samples from the latest validation round'),
      el('p', { class: 'muted' }, 'Each: image | ground truth | prediction.'), samplesHost),
    el('section', { class: 'panel', 'aria-labelledby': 'config-title' },
      el('h2', { id: 'config-title' }, 'Configuration'), configPre));

  // -------------------------------------------------------------- header --
  function renderHead() {
    const j = S.job;
    clear(head).append(
      el('div', {}, el('p', { class: 'crumb' }, el('a', { href: '#/jobs' }, '← All jobs')),
        el('h1', { tabindex: -1 }, j.name || `Job ${j.id}`, ' ', el('span', { class: 'job-id' }, `#${j.id}`))),
      el('div', { class: 'toolbar' },
        el('a', { class: 'btn', href: `/api/v1/jobs/${j.id}/metrics.csv`, download: `job-${j.id}-metrics.csv` }, 'Metrics CSV'),
        j.best ? el('a', { class: 'btn', href: `/api/v1/jobs/${j.id}/checkpoint?which=best` }, 'Best checkpoint') : null,
        !FINAL.has(j.status)
          ? el('button', { type: 'button', class: 'btn', onclick: () => act('cancel') }, 'Cancel job')
          : el('button', { type: 'button', class: 'btn btn-danger', onclick: () => act('delete') }, 'Delete job')));
  }

  async function act(what) {
    const j = S.job;
    const q = what === 'cancel' ? `Cancel job ${j.id}? It checkpoints and stops.` : `Delete job ${j.id} and its files? This cannot be undone.`;
    if (!window.confirm(q)) return;
    try {
      if (what === 'cancel') await api(`/jobs/${j.id}/cancel`, { method: 'POST' });
      else {
        // nothing of this job may be read once it is gone
        S.deleting = true;
        clearTimeout(S.finalTimer);
        aborter.abort();
        await api(`/jobs/${j.id}`, { method: 'DELETE' });
        navigate('#/jobs');
        return;
      }
      live.textContent = 'Cancel requested.';
      refreshJob();
    } catch (e) {
      S.deleting = false;
      live.textContent = `${what === 'cancel' ? 'Cancel' : 'Delete'} failed: ${e.message}`;
    }
  }

  function renderSummary() {
    const j = S.job, c = j.config || {};
    const item = (k, v) => el('div', { class: 'kv' }, el('dt', {}, k), el('dd', {}, v));
    clear(summary).append(el('dl', { class: 'kvs' },
      item('Status', el('span', { id: 'job-status' }, statusBadge(j.status))),
      item('Progress', progressBar(j)),
      item('Method', c.method?.name ?? '–'),
      item('Dataset', `${c.dataset?.path ?? '–'}${c.dataset?.labeled ? ` · ${c.dataset.labeled} labeled` : ''}`),
      item('Best mean Dice', j.best ? `${fmtDice(j.best.mean_dice)} (it. ${j.best.iteration}, model ${j.best.model.toUpperCase()})` : '–'),
      item('Speed', j.images_per_s ? `${fmtNum(j.images_per_s, 1)} images/s` : j.status === 'running' ? 'measuring…' : '–'),
      item('Started', fmtTime(j.started_at)),
      item('Duration', fmtDuration(elapsed(j)))),
    j.error ? el('p', { class: 'flash flash-error' }, `Error: ${j.error}`) : '');
    configPre.textContent = JSON.stringify(j.config, null, 2);
  }

  // -------------------------------------------------------------- charts --
  const classColor = (cls) => classColorFn(S.classes)(cls);

  // the plot area's width in pixels: the column less the y axis
  function chartWidth() {
    const col = (sections.clientWidth || root.clientWidth || 800) / (window.innerWidth > 1100 ? 2 : 1);
    return Math.max(100, Math.floor(col) - 70);
  }

  function buildCharts() {
    const names = Object.keys(S.series).sort().join(',') + '|' + S.classes.join(',');
    if (names === S.names) return;
    S.names = names;
    for (const c of S.charts.values()) c.chart.destroy();
    S.charts.clear();
    clear(sections);
    for (const sec of groupMetrics(Object.keys(S.series), classColor)) {
      const grid = el('div', { class: 'chart-grid' });
      sections.append(el('section', { class: 'panel', id: `sec-${sec.id}`, 'aria-labelledby': `sec-${sec.id}-title` },
        el('h2', { id: `sec-${sec.id}-title` }, sec.title), grid));
      for (const spec of sec.charts) S.charts.set(spec.key, { chart: new Chart(grid, spec), spec });
    }
  }

  function drawMetrics() {
    buildCharts();
    for (const { chart, spec } of S.charts.values()) {
      const cols = spec.series.map((s) => S.series[s.name] || { step: [], value: [] });
      chart.setColumns(cols, foldNote(cols));
    }
  }

  let diceChart = null, diceKey = '';
  function drawDice() {
    const rounds = S.rounds;
    const key = S.classes.join(',');
    if (!diceChart || key !== diceKey) {
      diceChart?.destroy();
      diceKey = key;
      const series = [];
      for (const m of ['a', 'b']) {
        series.push({ label: `mean ${m.toUpperCase()}`, color: INK, model: m, width: 2.5, points: true });
        S.classes.forEach((c) => series.push({ label: `${c} ${m.toUpperCase()}`, color: classColor(c), model: m, points: true }));
      }
      diceChart = new Chart(diceHost, { key: 'dice', title: 'Validation Dice per class (solid: model A, dashed: model B)',
        yLabel: 'Dice', series, yRange: [0, 1] });
    }
    const cols = [];
    for (const m of ['a', 'b']) {
      const rs = rounds.filter((r) => r.model === m);
      cols.push({ step: rs.map((r) => r.iteration), value: rs.map((r) => r.mean_dice) });
      S.classes.forEach((c) => cols.push({ step: rs.map((r) => r.iteration), value: rs.map((r) => r.classes?.[c]?.dice ?? null) }));
    }
    diceChart.setColumns(cols, rounds.length ? '' : 'No validation round yet.');
    diceChart.fig.dataset.rounds = String(rounds.length);
    drawFinal();
  }

  function drawFinal() {
    const best = S.job?.best && S.rounds.find((r) => r.iteration === S.job.best.iteration && r.model === S.job.best.model);
    const latest = S.rounds.at(-1);
    const round = best || latest;
    clear(finalHost);
    if (!round) return;
    const metric = (v, d = 3) => (v === null || v === undefined ? '–' : fmtNum(v, d));
    const mean = (k) => {
      const vs = S.classes.map((c) => round.classes?.[c]?.[k]).filter((v) => v !== null && v !== undefined);
      return vs.length ? vs.reduce((a, b) => a + b, 0) / vs.length : null;
    };
    finalHost.append(el('div', { class: 'table-wrap' }, el('table', { class: 'metrics-table', id: 'final-table' },
      el('caption', {}, `${best ? 'Best' : 'Latest'} validation round: iteration ${round.iteration}, model ${round.model.toUpperCase()}` +
        (S.job && FINAL.has(S.job.status) ? '' : ' (training continues)')),
      el('thead', {}, el('tr', {}, ['Class', 'Dice', 'Jaccard', 'HD95 (px)', 'ASD (px)'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, S.classes.map((c) => {
        const v = round.classes?.[c] || {};
        const sw = el('span', { class: 'swatch', 'aria-hidden': 'true' });
        sw.style.background = classColor(c);
        return el('tr', {}, el('th', { scope: 'row' }, sw, c), el('td', { class: 'num' }, metric(v.dice)),
          el('td', { class: 'num' }, metric(v.jaccard)), el('td', { class: 'num' }, metric(v.hd95, 2)),
          el('td', { class: 'num' }, metric(v.asd, 2)));
      })),
      el('tfoot', {}, el('tr', {}, el('th', { scope: 'row' }, 'Mean'), el('td', { class: 'num' }, metric(round.mean_dice)),
        el('td', { class: 'num' }, metric(mean('jaccard'))), el('td', { class: 'num' }, metric(mean('hd95'), 2)),
        el('td', { class: 'num' }, metric(mean('asd'), 2)))))),
    el('p', { class: 'muted small' }, 'HD95 and ASD are empty when a class is missing from the prediction or the ground truth.'));
  }

  // Sample overlays are rendered on request by the daemon, one at a time
  // (503 while another renders), so they are fetched one after the other,
  // again after each validation round; leaving the page aborts the fetch.
  const aborter = new AbortController();
  let sampleUrls = [];
  async function fetchSample(k, iteration) {
    for (let attempt = 0; attempt < 5 && !S.stopped; attempt++) {
      const res = await fetch(`/api/v1/jobs/${id}/samples/${k}.png?it=${iteration}`, { signal: aborter.signal });
      if (res.ok) return URL.createObjectURL(await res.blob());
      if (res.status !== 503) return null;
      await new Promise((r) => setTimeout(r, 1000 * (attempt + 1)));
    }
    return null;
  }

  async function drawSamples() {
    const latest = S.rounds.at(-1);
    if (!latest || latest.iteration === S.sampleIter) return;
    S.sampleIter = latest.iteration;
    const cases = Object.keys(latest.cases || {}).slice(0, 4);
    const figs = cases.map((name) => el('figure', { class: 'sample' }, el('div', { class: 'sample-wait' }, 'Rendering…'),
      el('figcaption', {}, `${name} · iteration ${latest.iteration}`)));
    clear(samplesHost).append(...figs);
    for (const u of sampleUrls) URL.revokeObjectURL(u);
    sampleUrls = [];
    if (!cases.length) samplesHost.append(el('p', { class: 'muted' }, 'No validation cases.'));
    for (const [k, name] of cases.entries()) {
      let url = null;
      try {
        url = await fetchSample(k, latest.iteration);
      } catch {
        return; // aborted: the page was left
      }
      if (S.stopped || S.sampleIter !== latest.iteration) return;
      if (url) sampleUrls.push(url);
      figs[k].firstChild.replaceWith(url
        ? el('img', { src: url, alt: `Validation case ${name}: image, ground truth and prediction`, width: 384, height: 128 })
        : el('p', { class: 'muted sample-missing' }, 'Not available yet.'));
    }
  }

  function scheduleRedraw() {
    if (S.redraw || S.stopped) return;
    S.redraw = setTimeout(() => {
      S.redraw = null;
      drawMetrics();
      maybeRefetch();
    }, REDRAW_MS);
  }

  // --------------------------------------------------------------- data --
  function addPoint(name, step, value) {
    const s = S.series[name] || (S.series[name] = { step: [], value: [], points: 0, folded: 0 });
    if (s.step.length && step <= s.step.at(-1)) return;
    s.step.push(step);
    s.value.push(value);
    s.points++;
  }

  function onMetric(d) {
    if (d.iteration <= S.last) return;
    for (const [name, v] of Object.entries(d.values)) addPoint(name, d.iteration, v);
    S.last = d.iteration;
    scheduleRedraw();
  }

  function onEvaluation(d) {
    if (S.rounds.some((r) => r.iteration === d.iteration && r.model === d.model)) return;
    S.rounds.push(d);
    S.rounds.sort((a, b) => a.iteration - b.iteration || a.model.localeCompare(b.model));
    if (!S.classes.length) S.classes = classNames(S.rounds);
    drawDice();
    drawSamples();
    refreshJob();
  }

  function onProgress(d) {
    if (!S.job) return;
    Object.assign(S.job, { iteration: d.iteration, total: d.total, images_per_s: d.images_per_s, eta_s: d.eta_s,
      progress: d.total ? d.iteration / d.total : 0 });
    renderSummary();
  }

  function onStatus(d) {
    if (!S.job) return;
    const was = S.job.status;
    S.job.status = d.status;
    if (was !== d.status) { refreshJob(); renderHead(); }
    if (FINAL.has(d.status)) {
      closeStream();
      stopPolling();
      // the stream ended with the job: one last full read
      clearTimeout(S.finalTimer);
      S.finalTimer = setTimeout(() => {
        if (!S.stopped && !S.deleting) Promise.all([loadMetrics(), loadEvaluation()]).catch(() => {});
      }, 200);
    }
  }

  const handlers = { metric: onMetric, evaluation: onEvaluation, progress: onProgress, status: onStatus };
  function dispatch(type, data) {
    if (!S.loaded) { S.held.push([type, data]); return; }
    handlers[type](data);
  }

  async function refreshJob() {
    if (S.deleting) return;
    try {
      const j = await api(`/jobs/${id}`);
      if (S.stopped) return;
      const statusChanged = !S.job || S.job.status !== j.status || !!S.job.best !== !!j.best;
      S.job = j;
      if (statusChanged) renderHead();
      renderSummary();
      drawFinal();
    } catch (e) {
      if (!S.stopped && !S.deleting) live.textContent = `Cannot read the job: ${e.message}`;
    }
  }

  // The series, bucketed to the charts' width by the server when longer.
  async function loadMetrics() {
    const max = chartWidth();
    const data = await api(`/jobs/${id}/metrics?max_points=${max}`);
    if (S.stopped) return;
    S.series = {};
    let last = -1;
    for (const [name, s] of Object.entries(data)) {
      S.series[name] = { step: s.step, value: s.value, points: s.points, folded: s.folded };
      if (s.step.length) last = Math.max(last, s.step.at(-1));
    }
    S.last = last;
    S.refetchAt = Date.now();
    drawMetrics();
  }

  // Live points are appended one by one; when they outgrow the width again,
  // ask for a fresh bucketed copy (at most every 15 s).
  function maybeRefetch() {
    const w = chartWidth();
    const longest = Math.max(0, ...Object.values(S.series).map((s) => s.step.length));
    if (longest > 2 * w && Date.now() - S.refetchAt > 15000) {
      S.refetchAt = Date.now();
      loadMetrics().catch(() => {});
    }
  }

  async function loadEvaluation() {
    const ev = await api(`/jobs/${id}/evaluation`);
    if (S.stopped) return;
    S.rounds = ev.rounds || [];
    S.classes = classNames(S.rounds);
    drawDice();
    drawSamples();
  }

  // ------------------------------------------------------ live: SSE, poll --
  function openStream() {
    if (typeof EventSource === 'undefined') return false;
    const es = new EventSource(`/api/v1/jobs/${id}/events`);
    S.es = es;
    for (const type of Object.keys(handlers)) {
      es.addEventListener(type, (ev) => {
        let d;
        try { d = JSON.parse(ev.data); } catch { return; }
        dispatch(type, d);
      });
    }
    es.onopen = () => { stopPolling(); live.textContent = 'Live: following the training as it happens.'; };
    es.onerror = () => {
      if (S.stopped || (S.job && FINAL.has(S.job.status))) return;
      live.textContent = 'Live stream interrupted: polling every few seconds until it reconnects.';
      startPolling();
    };
    return true;
  }

  function closeStream() {
    if (S.es) { S.es.close(); S.es = null; }
    if (S.job && FINAL.has(S.job.status)) live.textContent = `Finished: ${S.job.status}.`;
  }

  function startPolling() {
    if (S.poll) return;
    const tick = async () => {
      try {
        const data = await api(`/jobs/${id}/metrics?since=${S.last}`);
        for (const [name, s] of Object.entries(data)) s.step.forEach((st, i) => { if (st > S.last) addPoint(name, st, s.value[i]); });
        S.last = Math.max(S.last, ...Object.values(data).map((s) => s.step.at(-1) ?? -1));
        scheduleRedraw();
        const before = S.rounds.length;
        const ev = await api(`/jobs/${id}/evaluation`);
        S.rounds = ev.rounds || [];
        if (S.rounds.length !== before) { S.classes = classNames(S.rounds); drawDice(); drawSamples(); }
        await refreshJob();
        if (S.job && FINAL.has(S.job.status)) { stopPolling(); closeStream(); return; }
      } catch { /* the next tick tries again */ }
      if (S.poll) S.poll = setTimeout(tick, POLL_MS);
    };
    S.poll = setTimeout(tick, 0);
  }

  function stopPolling() {
    if (S.poll) { clearTimeout(S.poll); S.poll = null; }
  }

  // ---------------------------------------------------------------- start --
  (async () => {
    try {
      S.job = await api(`/jobs/${id}`);
    } catch (e) {
      clear(root).append(el('div', { class: 'page-head' }, el('h1', { tabindex: -1 }, `Job ${id}`)),
        el('p', { class: 'flash flash-error' }, e.status === 404 ? `There is no job ${id}.` : e.message),
        el('p', {}, el('a', { href: '#/jobs' }, '← All jobs')));
      return;
    }
    renderHead();
    renderSummary();
    // the heading exists only now: keyboard users start from it
    if (document.activeElement === document.body || document.activeElement === root) head.querySelector('h1')?.focus({ preventScroll: true });
    const streaming = !FINAL.has(S.job.status) && openStream();
    try {
      await Promise.all([loadEvaluation(), loadMetrics()]);
    } catch (e) {
      live.textContent = `Cannot load the metrics: ${e.message}`;
    }
    S.loaded = true;
    for (const [type, d] of S.held.splice(0)) handlers[type](d);
    if (FINAL.has(S.job.status)) live.textContent = `Finished: ${S.job.status}.`;
    else if (!streaming) startPolling();
  })();

  // a narrower window: the charts have fewer pixels than points again
  let resizeTimer = null;
  const onResize = () => {
    clearTimeout(resizeTimer);
    clearTimeout(S.finalTimer);
    resizeTimer = setTimeout(() => {
      const w = chartWidth();
      if (Object.values(S.series).some((s) => s.step.length > w || (s.folded && s.step.length < w / 2)))
        loadMetrics().catch(() => {});
    }, 500);
  };
  window.addEventListener('resize', onResize);

  return () => {
    S.stopped = true;
    aborter.abort();
    for (const u of sampleUrls) URL.revokeObjectURL(u);
    window.removeEventListener('resize', onResize);
    clearTimeout(resizeTimer);
    clearTimeout(S.finalTimer);
    closeStream();
    stopPolling();
    clearTimeout(S.redraw);
    for (const c of S.charts.values()) c.chart.destroy();
    diceChart?.destroy();
  };
}
