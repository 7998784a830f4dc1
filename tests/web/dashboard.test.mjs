// The dashboard in Debian's headless Chromium, against the dacld that run.sh
// started (with a bearer token). Through the page, as a user would:
//   a bad submission -> the token dialog (401) -> the server's error next to
//   the field it names; a good one -> the job page; the list shows the job;
//   the loss chart gains points while it trains; per-class Dice and the final
//   table appear after a validation round; compare shows the config
//   differences; no console errors. Screenshots at laptop and phone width.
// Every wait is bounded (waitFor/waitForFunction with a timeout), none fixed.
// Env: BASE (http://127.0.0.1:PORT), TOKEN, OUT_DIR, CHROMIUM.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BASE = process.env.BASE;
const TOKEN = process.env.TOKEN;
const OUT = join(process.env.OUT_DIR || '.', 'screenshots');
mkdirSync(OUT, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'dacl-chromium-'));
const T = 30000; // the longest any single wait may take

// A tiny phantom job: 32x32 patches, a validation round every 50 iterations.
// Long enough to be watched while it runs, and its 300 points are more than a
// phone-width chart has pixels, so that view gets bucketed series.
const tinyJob = (name, extra = {}) => ({
  name,
  dataset: { path: 'phantom:cardiac', labeled: 2 },
  method: { name: 'cps' },
  train: { iterations: 300, batch: 4, labeled_batch: 2, patch: [32, 32], val_every: 50, checkpoint_every: 150,
    threads: 2, ...extra },
});

let failed = 0;
async function step(desc, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok: ${desc} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    console.log(`FAIL: ${desc}: ${String(e.message).split('\n')[0]}`);
  }
}
function expect(cond, what) {
  if (!cond) throw new Error(what);
}
const shot = (page, name) => page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });

const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run'],
  viewport: { width: 1366, height: 900 },
});
const consoleErrors = [];
let jobId = null;
try {
  const page = context.pages()[0] || (await context.newPage());
  // Chromium logs every HTTP error answer as a console error. Two kinds are
  // answers the page expects and handles, not faults: the 401 and 400s the
  // submission steps provoke on purpose, and a sample's 503 "busy" (the daemon
  // renders one sample at a time; the page retries); and the event stream the
  // polling step cuts on purpose. Everything else counts.
  const expected = (m) => (/status of (400|401) /.test(m.text()) && m.location().url === `${BASE}/api/v1/jobs`) ||
    (/status of 503 /.test(m.text()) && /\/api\/v1\/jobs\/\d+\/samples\/\d+\.png/.test(m.location().url)) ||
    (/ERR_FAILED/.test(m.text()) && /\/api\/v1\/jobs\/\d+\/events$/.test(m.location().url)); // the stream the test cuts
  page.on('console', (m) => { if (m.type() === 'error' && !expected(m)) consoleErrors.push(`${m.text()} (${m.location().url})`); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.on('dialog', (d) => d.accept()); // confirm() of cancel/delete

  await step('the job list loads, empty', async () => {
    await page.goto(`${BASE}/`);
    await page.locator('h1', { hasText: 'Training jobs' }).waitFor({ timeout: T });
    await page.getByText('No jobs yet').waitFor({ timeout: T });
  });

  await step('a bad learning rate: the token is asked for, then train.lr’s error shows next to its field', async () => {
    await page.fill('#f-name', 'web-bad');
    await page.fill('#f-train-lr', '-1');
    await page.click('#submit-form button[type=submit]');
    await page.locator('#token-dialog[open]').waitFor({ timeout: T });
    await page.fill('#token-input', TOKEN);
    await page.press('#token-input', 'Enter');
    const err = page.locator('.field[data-field="train.lr"] .field-error');
    await err.waitFor({ state: 'visible', timeout: T });
    const text = await err.textContent();
    expect(/train\.lr/.test(text) && /-1/.test(text), `the error says '${text}'`);
    expect(await page.getAttribute('#f-train-lr', 'aria-invalid') === 'true', 'the field is marked invalid');
    expect(await page.locator('#f-json-error').isHidden(), 'nothing is blamed on the JSON box');
  });
  await shot(page, 'submit-error-laptop');

  await step('an unknown field in the pasted JSON is named by the JSON box', async () => {
    await page.fill('#f-train-lr', '');
    await page.fill('#f-json', JSON.stringify({ method: { name: 'cps', tua: 1 } }));
    await page.click('#submit-form button[type=submit]');
    const err = page.locator('#f-json-error');
    await err.waitFor({ state: 'visible', timeout: T });
    expect(/method\.tua/.test(await err.textContent()), `the error says '${await err.textContent()}'`);
  });

  await step('a good config submits (token kept) and opens the job page', async () => {
    await page.fill('#f-name', '');
    await page.fill('#f-json', JSON.stringify(tinyJob('web-cps')));
    await page.click('#submit-form button[type=submit]');
    await page.waitForURL(/#\/jobs\/\d+$/, { timeout: T });
    jobId = Number(page.url().match(/#\/jobs\/(\d+)$/)[1]);
    await page.locator('h1', { hasText: 'web-cps' }).waitFor({ timeout: T });
  });

  // a second job, through the API, for the compare view and the DACL internals:
  // differs in name, method, lr and iterations
  const dacl = tinyJob('web-dacl', { lr: 0.02, iterations: 200 });
  dacl.method = { name: 'dacl', cl_warmup: 5, bank_size: 200 };
  const second = await page.evaluate(async ([cfg, token]) => {
    const r = await fetch('/api/v1/jobs', { method: 'POST', headers: { Authorization: `Bearer ${token}` }, body: JSON.stringify(cfg) });
    return (await r.json()).id;
  }, [dacl, TOKEN]);

  await step('the job list shows the job', async () => {
    await page.goto(`${BASE}/#/jobs`);
    const row = page.locator(`#jobs-table tr[data-job="${jobId}"]`);
    await row.waitFor({ timeout: T });
    expect((await row.textContent()).includes('web-cps'), 'the row names the job');
    expect((await row.locator('.col-method').textContent()).trim() === 'cps', 'the method column says cps');
    await page.locator(`#jobs-table tr[data-job="${second}"]`).waitFor({ timeout: T });
  });

  await step('the status filter shows only queued jobs', async () => {
    await page.selectOption('#status-filter', 'queued');
    await page.waitForURL(/status=queued/, { timeout: T });
    await page.locator(`#jobs-table tr[data-job="${second}"]`).waitFor({ timeout: T });
    const statuses = await page.locator('#jobs-table tbody tr').evaluateAll((rs) => rs.map((r) => r.dataset.status));
    expect(statuses.every((s) => s === 'queued'), `statuses ${statuses}`);
    await page.selectOption('#status-filter', '');
  });
  await shot(page, 'jobs-laptop');

  await step('the loss chart gains points while the job trains', async () => {
    await page.goto(`${BASE}/#/jobs/${jobId}`);
    const points = () => page.locator('[data-chart="loss"]').getAttribute('data-points').then(Number);
    await page.locator('[data-chart="loss"]').waitFor({ timeout: T });
    await page.waitForFunction(() => Number(document.querySelector('[data-chart="loss"]')?.dataset.points) > 0, null, { timeout: T });
    const status1 = (await page.locator('#job-status').textContent()).trim();
    const p1 = await points();
    expect(status1 === 'running', `the job should still be running when first seen (status ${status1}, ${p1} points)`);
    await page.waitForFunction((p) => Number(document.querySelector('[data-chart="loss"]').dataset.points) > p, p1, { timeout: T });
    const p2 = await points();
    expect(p2 > p1, `${p1} -> ${p2} points`);
    const legend = await page.locator('[data-chart="loss"] .u-legend').textContent();
    expect(/total/.test(legend) && /supervised A/.test(legend) && /cross \(CPS\) B/.test(legend), `legend: ${legend}`);
    const canvas = await page.locator('[data-chart="loss"] canvas').count();
    expect(canvas > 0, 'uPlot drew a canvas');
  });

  await step('per-class Dice appears after a validation round, with the final table', async () => {
    await page.waitForFunction(() => Number(document.querySelector('[data-chart="dice"]')?.dataset.rounds) > 0, null, { timeout: T });
    const legend = await page.locator('[data-chart="dice"] .u-legend').textContent();
    for (const c of ['RV', 'Myo', 'LV']) expect(legend.includes(`${c} A`), `class ${c} in the Dice legend: ${legend}`);
    const rows = await page.locator('#final-table tbody th').allTextContents();
    expect(rows.join(',') === 'RV,Myo,LV', `final table classes: ${rows}`);
    const dice = await page.locator('#final-table tbody tr td:nth-child(2)').allTextContents();
    expect(dice.every((d) => /^\d(\.\d+)?$/.test(d.trim())), `Dice values: ${dice}`);
  });

  await step('the learning-rate and λ schedules are charted', async () => {
    await page.locator('[data-chart="lr"] canvas').waitFor({ timeout: T });
    await page.locator('[data-chart="lambda"] canvas').waitFor({ timeout: T });
  });

  await step('the job finishes and the page says so', async () => {
    await page.locator('#job-status .badge-succeeded').waitFor({ timeout: 90000 });
    await page.locator('.samples img').first().waitFor({ timeout: T });
    await page.waitForFunction(() => [...document.querySelectorAll('.samples img')].some((i) => i.complete && i.naturalWidth > 0),
      null, { timeout: T });
  });
  await shot(page, 'job-laptop');

  await step('without the event stream the page falls back to polling and still gains points', async () => {
    await page.route('**/api/v1/jobs/*/events', (r) => r.abort());
    await page.goto(`${BASE}/#/jobs`);
    await page.locator('h1', { hasText: 'Training jobs' }).waitFor({ timeout: T });
    await page.goto(`${BASE}/#/jobs/${second}`);
    await page.locator('#job-status .badge-running').waitFor({ timeout: T });
    await page.waitForFunction(() => Number(document.querySelector('[data-chart="loss"]')?.dataset.points) > 0, null, { timeout: T });
    const p1 = Number(await page.locator('[data-chart="loss"]').getAttribute('data-points'));
    await page.waitForFunction((p) => Number(document.querySelector('[data-chart="loss"]').dataset.points) > p, p1, { timeout: T });
    expect(/polling/.test(await page.locator('.live').textContent()), 'the page says it is polling');
    await page.unroute('**/api/v1/jobs/*/events');
  });

  await step('a DACL job shows its internals: anchors and bank fill per class, densities', async () => {
    await page.locator('#sec-dacl [data-chart="cl-anchors"] canvas').waitFor({ timeout: T });
    const legend = await page.locator('[data-chart="cl-anchors"] .u-legend').textContent();
    for (const c of ['RV', 'Myo', 'LV']) expect(legend.includes(`${c} A`) && legend.includes(`${c} B`), `anchors legend: ${legend}`);
    await page.locator('#sec-dacl [data-chart="cl-bank"] canvas').waitFor({ timeout: T });
    await page.locator('#sec-dacl [data-chart="cl-density"] canvas').waitFor({ timeout: T });
    const loss = await page.locator('[data-chart="loss"] .u-legend').textContent();
    expect(/contrastive A/.test(loss), `the loss chart has the contrastive term: ${loss}`);
  });

  await step('metric names alone decide the charts (a name never seen before gets one)', async () => {
    const groups = await page.evaluate(async () => {
      const m = await import('/metrics.js');
      const names = ['loss', 'loss_sup_a', 'loss_cl_b', 'lambda_cl', 'lr', 'cl_anchors_a.RV', 'cl_anchors_b.LV',
        'cl_bank.Myo', 'cl_anchor_density_a', 'cl_key_density_b', 'cl_proto_drift_a', 'grad_norm_a', 'grad_norm_b'];
      return Object.fromEntries(m.groupMetrics(names, () => '#000').map((s) => [s.id, Object.fromEntries(
        s.charts.map((c) => [c.key, c.series.map((x) => x.name)]))]));
    });
    const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
    expect(same(groups.training, { loss: ['loss', 'loss_sup_a', 'loss_cl_b'] }), JSON.stringify(groups.training));
    expect(same(groups.schedule, { lr: ['lr'], lambda: ['lambda_cl'] }), JSON.stringify(groups.schedule));
    expect(same(Object.keys(groups.dacl), ['cl-anchors', 'cl-bank', 'cl-density', 'cl-proto-drift']), JSON.stringify(groups.dacl));
    expect(same(groups.other, { 'other-grad': ['grad_norm_a', 'grad_norm_b'] }), JSON.stringify(groups.other));
  });

  await step('a series longer than the chart is bucketed and the chart says so', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${BASE}/#/jobs`);
    await page.locator('h1', { hasText: 'Training jobs' }).waitFor({ timeout: T });
    await page.goto(`${BASE}/#/jobs/${jobId}`);
    await page.waitForFunction(() => Number(document.querySelector('[data-chart="loss"]')?.dataset.points) > 0, null, { timeout: T });
    const note = page.locator('[data-chart="loss"] .chart-note');
    await note.waitFor({ state: 'visible', timeout: T });
    expect(/More points than pixels: 300 points per line drawn as \d+/.test(await note.textContent()), await note.textContent());
  });
  await shot(page, 'job-phone');

  await step('the phone layout fits the width', async () => {
    await page.goto(`${BASE}/#/jobs`);
    await page.locator(`#jobs-table tr[data-job="${jobId}"]`).waitFor({ timeout: T });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow <= 1, `the page is ${overflow}px wider than the screen`);
  });
  await shot(page, 'jobs-phone');

  await step('compare: two jobs, their Dice on one chart, differing settings marked', async () => {
    await page.setViewportSize({ width: 1366, height: 900 });
    await page.goto(`${BASE}/#/compare/${jobId},${second}`);
    await page.locator('#config-compare').waitFor({ timeout: T });
    const diff = await page.locator('#config-compare tr.diff').evaluateAll((rs) => rs.map((r) => r.dataset.key));
    for (const k of ['name', 'method.name', 'train.lr', 'train.iterations']) expect(diff.includes(k), `${k} marked as differing (${diff})`);
    expect(!diff.includes('train.batch'), 'train.batch is the same');
    await page.locator('[data-chart="compare-dice"] canvas').waitFor({ timeout: T });
    await page.check('#only-diff');
    expect(await page.locator('#config-compare tr.same').first().isHidden(), 'only differences are shown');
  });
  await shot(page, 'compare-laptop');

  await step('keyboard: the job link is reachable with Tab and opens the job', async () => {
    await page.goto(`${BASE}/#/jobs`);
    const link = page.locator(`#jobs-table tr[data-job="${jobId}"] .col-job a`);
    await link.waitFor({ timeout: T });
    let reached = false;
    for (let i = 0; i < 30 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await link.evaluate((a) => a === document.activeElement);
    }
    expect(reached, 'Tab never reached the link');
    await page.keyboard.press('Enter');
    await page.waitForURL(new RegExp(`#/jobs/${jobId}$`), { timeout: T });
  });

  await step('delete from the job page (the token is remembered for the tab)', async () => {
    await page.goto(`${BASE}/#/jobs/${second}`);
    const del = page.getByRole('button', { name: /Delete job|Cancel job/ });
    await del.waitFor({ timeout: T });
    if ((await del.textContent()).includes('Cancel')) {
      await del.click();
      await page.getByRole('button', { name: 'Delete job' }).waitFor({ timeout: T });
    }
    await page.getByRole('button', { name: 'Delete job' }).click();
    await page.waitForURL(/#\/jobs$/, { timeout: T });
    await page.locator(`#jobs-table tr[data-job="${jobId}"]`).waitFor({ timeout: T });
    expect(await page.locator(`#jobs-table tr[data-job="${second}"]`).count() === 0, 'the deleted job is gone');
    expect(await page.locator('#token-dialog[open]').count() === 0, 'no second token prompt');
  });
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
if (consoleErrors.length) {
  failed++;
  console.log(`FAIL: no console errors: ${consoleErrors.join(' | ')}`);
} else {
  console.log('ok: no console errors');
}
console.log(failed ? `${failed} browser check(s) failed` : 'all browser checks passed');
process.exit(failed ? 1 : 0);
