// Page-load benchmark (BENCHMARKS.md, "A console that is ready in a second"): for the sign-in
// page and the sessions page, the bytes on the wire (HTML, JS, WASM, CSS; compressed sizes as
// sent) and the time from navigation start until the page is hydrated, over an emulated link,
// cold (empty cache) and warm (the same browser visiting again).
//
// usage: node bench/page-load.mjs BASE_URL EMAIL PASSWORD [LABEL] [RUNS]
// Link: 10 Mbit/s both ways, 40 ms latency (Chromium's network emulation through CDP).
// `NO_DICTIONARY=1` runs Chromium without Compression Dictionary Transport (as a browser
// without `dcz` support: every part is sent as its own brotli file). `CPU_SLOWDOWN=N` slows the
// page's main thread N times (CDP `Emulation.setCPUThrottlingRate`): the same build as a slower
// host would run it, for a before/after on one machine that does not depend on its speed.
import { chromium } from '@playwright/test';

const [base, email, password, label = 'build', runsArg = '5'] = process.argv.slice(2);
if (!base || !email || !password) {
  console.error('usage: node bench/page-load.mjs BASE_URL EMAIL PASSWORD [LABEL] [RUNS]');
  process.exit(2);
}
const runs = Number(runsArg);
const cpuSlowdown = Number(process.env.CPU_SLOWDOWN ?? '1');
const LINK = { offline: false, latency: 40, downloadThroughput: 1_250_000, uploadThroughput: 1_250_000 };
const ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic',
  ...(process.env.NO_DICTIONARY === '1'
    ? ['--disable-features=CompressionDictionaryTransport,CompressionDictionaryTransportBackend']
    : []),
];

// Records, in the page, when the hydration marker appears (ms since navigation start).
const MARK_HYDRATED = () => {
  const watch = () => {
    const done = () => {
      if (document.body && document.body.dataset.hydrated === 'true' && !window.__hydratedAt) {
        window.__hydratedAt = performance.now();
      }
    };
    new MutationObserver(done).observe(document, { subtree: true, attributes: true, childList: true });
    done();
  };
  watch();
};

/** One visit of `path` in `context`: bytes on the wire by kind, and time to hydrated. */
async function visit(context, path) {
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', LINK);
  if (cpuSlowdown > 1) await cdp.send('Emulation.setCPUThrottlingRate', { rate: cpuSlowdown });
  const kinds = new Map();
  const bytes = { html: 0, js: 0, wasm: 0, css: 0, other: 0, files: 0, dcz: 0 };
  cdp.on('Network.responseReceived', (e) => {
    const url = new URL(e.response.url);
    const p = url.pathname;
    const kind = e.type === 'Document' ? 'html'
      : p.endsWith('.wasm') ? 'wasm'
      : p.endsWith('.js') ? 'js'
      : p.endsWith('.css') ? 'css' : 'other';
    kinds.set(e.requestId, kind);
    bytes.files += 1;
    const encoding = Object.entries(e.response.headers)
      .find(([name]) => name.toLowerCase() === 'content-encoding')?.[1];
    if (encoding === 'dcz') bytes.dcz += 1;
  });
  cdp.on('Network.loadingFinished', (e) => {
    const kind = kinds.get(e.requestId) ?? 'other';
    bytes[kind] += e.encodedDataLength;
  });
  await page.addInitScript(MARK_HYDRATED);
  await page.goto(base + path, { waitUntil: 'load' });
  await page.waitForFunction(() => window.__hydratedAt !== undefined, null, { timeout: 60_000 });
  const hydratedMs = await page.evaluate(() => window.__hydratedAt);
  // Let late requests (none expected) finish before counting.
  await page.waitForTimeout(300);
  await page.close();
  const { files, dcz, ...sizes } = bytes;
  const total = Object.values(sizes).reduce((a, b) => a + b, 0);
  return { hydratedMs, total, ...bytes };
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
try {
  // A signed-in state for the sessions page, made once without emulation.
  const setup = await browser.newContext();
  const page = await setup.newPage();
  await page.goto(base + '/login');
  await page.waitForSelector('body[data-hydrated="true"]');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((url) => !url.pathname.startsWith('/login'));
  // One session for its detail page: a sandbox link made through the server function.
  const made = await page.evaluate(async () => {
    const body = new URLSearchParams({
      'input[option]': 'eko:uat:digilocker', 'input[customer_name]': 'Asha Rao',
      'input[phone]': '9876543210', 'input[consent]': 'on',
      'input[idempotency_key]': `bench-${Date.now()}`,
    });
    const answer = await fetch('/api/create_link', { method: 'POST', body });
    return answer.json();
  });
  const detailPath = `/sessions/${made.summary.public_id}`;
  const signedIn = await setup.storageState();
  await setup.close();

  // The server compresses the bundle's parts against its frame in the background after it
  // starts; measure once the frame is offered as their dictionary (at most a minute).
  const frame = (await (await fetch(base + '/login')).text()).match(/\/pkg\/kyc-desk\.[\w-]+\.wasm/)?.[0];
  for (let i = 0; frame && i < 600; i++) {
    const answer = await fetch(base + frame);
    await answer.arrayBuffer();
    if (answer.headers.get('use-as-dictionary')) break;
    await new Promise((done) => setTimeout(done, 100));
  }

  // First visit of every page: bytes on the wire (no emulation needed for a byte count).
  for (const path of ['/login', '/', '/links', '/sessions', detailPath, '/users', '/credentials', '/texts', '/audit', '/account/password', '/account/authenticator', '/account/confirm?next=%2Fsessions']) {
    const context = await browser.newContext({ storageState: path === '/login' ? undefined : signedIn });
    const first = await visit(context, path);
    await context.close();
    console.log(`${label}\tfirst-visit\t${path.startsWith('/sessions/') ? '/sessions/{id}' : path}\tbytes=${first.total}\thtml=${first.html}\tjs=${first.js}\twasm=${first.wasm}\tcss=${first.css}\tother=${first.other}\tfiles=${first.files}\tdcz=${first.dcz}`);
  }

  for (const [name, path, state] of [['sign-in', '/login', undefined], ['sessions', '/sessions', signedIn]]) {
    const cold = [];
    const warm = [];
    for (let i = 0; i < runs; i++) {
      const context = await browser.newContext({ storageState: state });
      cold.push(await visit(context, path));
      warm.push(await visit(context, path));
      await context.close();
    }
    for (const [when, xs] of [['cold', cold], ['warm', warm]]) {
      const pick = (k) => median(xs.map((x) => x[k]));
      console.log(
        `${label}\t${name}\t${when}\thydrated_ms_median=${pick('hydratedMs').toFixed(0)}` +
        `\thydrated_ms_max=${Math.max(...xs.map((x) => x.hydratedMs)).toFixed(0)}` +
        `\tbytes=${pick('total')}\thtml=${pick('html')}\tjs=${pick('js')}\twasm=${pick('wasm')}\tcss=${pick('css')}\tother=${pick('other')}`,
      );
    }
  }
} finally {
  await browser.close();
}
