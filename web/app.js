// The dashboard: hash routes (#/jobs, #/jobs/ID, #/compare/1,2), one view at
// a time; each view returns a function that stops its timers and streams.
import { setTokenPrompt, token } from './api.js';
import { clear } from './format.js';
import { jobsView } from './jobs.js';
import { jobView } from './job.js';
import { compareView } from './compare.js';

const main = document.getElementById('main');
let stop = null;

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  const raw = location.hash.replace(/^#/, '') || '/jobs';
  if (raw === 'main') return; // the skip link
  const [path, qs] = raw.split('?');
  const query = new URLSearchParams(qs || '');
  const parts = path.split('/').filter(Boolean);
  if (stop) stop();
  stop = null;
  clear(main);
  let title = 'Jobs';
  if (parts[0] === 'jobs' && parts[1] && /^\d+$/.test(parts[1])) {
    stop = jobView(main, { id: Number(parts[1]), navigate });
    title = `Job ${parts[1]}`;
  } else if (parts[0] === 'compare') {
    const ids = (parts[1] || '').split(',').filter((x) => /^\d+$/.test(x)).map(Number);
    stop = compareView(main, { ids, navigate });
    title = 'Compare';
  } else {
    stop = jobsView(main, { navigate, query });
  }
  document.title = `${title} · dacld`;
  for (const a of document.querySelectorAll('.top nav a'))
    a.toggleAttribute('aria-current', a.getAttribute('href') === `#/${parts[0] || 'jobs'}`);
  // keyboard and screen-reader users land on the new page's heading
  requestAnimationFrame(() => main.querySelector('h1')?.focus({ preventScroll: true }));
}

// The token dialog: a real <dialog>, so focus is trapped and Escape cancels.
const dialog = document.getElementById('token-dialog');
const tokenInput = document.getElementById('token-input');
const tokenWrong = document.getElementById('token-wrong');
setTokenPrompt((wrong) => new Promise((resolve) => {
  tokenWrong.hidden = !wrong;
  tokenInput.value = '';
  dialog.returnValue = '';
  dialog.showModal();
  dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok' ? tokenInput.value.trim() : null), { once: true });
}));
document.getElementById('token-forget').addEventListener('click', () => {
  token.set('');
  updateTokenState();
});
function updateTokenState() {
  const has = !!token.get();
  document.getElementById('token-state').hidden = !has;
}
dialog.addEventListener('close', updateTokenState);

fetch('/api/v1/version').then((r) => r.json()).then((v) => {
  document.getElementById('version').textContent = `dacld ${v.version}`;
}).catch(() => {});

// the skip link moves focus without touching the route in the hash
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', route);
updateTokenState();
route();
