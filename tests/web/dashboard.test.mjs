// The dashboard in Debian's headless Chromium, against the dacld that run.sh started.
// Env: BASE (http://127.0.0.1:PORT), TOKEN, OUT_DIR (screenshots), CHROMIUM.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BASE = process.env.BASE;
const OUT = join(process.env.OUT_DIR || '.', 'screenshots');
mkdirSync(OUT, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'dacl-chromium-'));

let failed = 0;
const ok = (desc) => console.log(`ok: ${desc}`);
const bad = (desc, why) => { failed++; console.log(`FAIL: ${desc}${why ? `: ${why}` : ''}`); };
async function step(desc, fn) {
  try { await fn(); ok(desc); } catch (e) { bad(desc, e.message.split('\n')[0]); }
}

const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run'],
  viewport: { width: 1366, height: 900 },
});
const consoleErrors = [];
try {
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await step('the dashboard loads', async () => {
    await page.goto(BASE + '/');
    await page.getByText('dacld dashboard').waitFor({ timeout: 10000 });
  });
  await page.screenshot({ path: join(OUT, 'jobs-laptop.png'), fullPage: true });
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
if (consoleErrors.length) bad('no console errors', consoleErrors.join(' | '));
else ok('no console errors');
console.log(failed ? `${failed} browser check(s) failed` : 'all browser checks passed');
process.exit(failed ? 1 : 0);
