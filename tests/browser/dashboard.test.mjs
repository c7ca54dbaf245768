// The live dashboard (GET /dashboard on the ingest port) in headless
// Chromium while a publisher runs: the page's EventSource receives samples,
// its charts draw them with deliveries/s above zero, the busiest-channels
// table shows the channel being published to, and the page asks nothing of
// any host but halley's ingest port (every request is intercepted and
// recorded; one to another host would be refused and fail the test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, waitInPage, DEADLINE_MS } from './lib/halley.mjs';

const ctx = setup();

/** Keeps an SSE subscriber open on the public port, so the channel has deliveries. */
async function subscribe(url) {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream' }, signal: abort.signal });
  assert.equal(res.status, 200, `subscribing to ${url}`);
  const reader = res.body.getReader();
  (async () => {
    try {
      for (;;) if ((await reader.read()).done) return;
    } catch {
      // aborted at the end of the test
    }
  })();
  return () => abort.abort();
}

test('the dashboard charts live samples and shows the busiest channel', { timeout: 90_000 }, async () => {
  const origin = `http://${ctx.halley.ingest}`;
  const stopSub = await subscribe(`${ctx.halley.url}/sub/dash-busy`);
  let publishing = true;
  const publisher = (async () => {
    let n = 0;
    while (publishing) {
      await ctx.halley.publish('dash-busy', `tick ${n++}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();

  const page = await ctx.browser.newPage();
  ctx.page = page;
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') page.problems.push(`console.${m.type()}: ${m.text()}`);
  });
  const requests = [];
  await page.route('**/*', (route) => {
    const url = route.request().url();
    requests.push(url);
    if (new URL(url).origin !== origin) return route.abort('blockedbyclient');
    return route.continue();
  });
  await page.goto(`${origin}/dashboard`, { timeout: DEADLINE_MS, waitUntil: 'load' });

  try {
    const sample = await waitInPage(ctx, 'a sample with deliveries/s > 0 and dash-busy among the busiest', () => {
      const d = window.halleyDashboard;
      const last = d && d.samples[d.samples.length - 1];
      const rows = [...document.querySelectorAll('#busiest tbody tr td:first-child')].map((td) => td.textContent);
      return last && last.deliveries_per_sec > 0 && rows.includes('dash-busy') && { last, rows, n: d.samples.length };
    });
    assert.ok(sample.last.busiest.some((c) => c.channel === 'dash-busy' && c.deliveries_per_sec > 0), JSON.stringify(sample.last.busiest));

    // Samples keep coming, one a second: the deliveries chart draws a line
    // in its series colour that grows with each (a few samples over the
    // 5-minute axis are only a few pixels, so wait for it to grow), and the
    // headline shows the rate.
    await waitInPage(ctx, 'three samples', () => window.halleyDashboard.samples.length >= 3);
    const line = await waitInPage(ctx, 'the deliveries chart to draw its line (over 10 pixels in its colour)', () => {
      const c = document.getElementById('chart-deliveries');
      // Read a copy on a canvas made for repeated reads (reading the chart
      // itself again and again makes Chromium warn on the console).
      const probe = (window.testProbe ||= document.createElement('canvas'));
      probe.width = c.width;
      probe.height = c.height;
      const copy = probe.getContext('2d', { willReadFrequently: true });
      copy.drawImage(c, 0, 0);
      const data = copy.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i] < 80 && data[i + 1] > 90 && data[i + 2] > 150 && data[i + 3] > 200) n++;
      return n > 10 && n;
    });
    const drawn = await page.evaluate(() => ({
      now: document.getElementById('now-deliveries').textContent,
      live: document.getElementById('live').textContent,
    }));
    drawn.line = line;
    assert.ok(drawn.line > 10, `the deliveries chart draws its line: ${JSON.stringify(drawn)}`);
    assert.notEqual(drawn.now, '–', 'the deliveries headline shows the current rate');
    assert.equal(drawn.live, 'live');
    const settings = await page.$$eval('#settings span:first-child', (names) => names.map((n) => n.textContent));
    assert.ok(settings.includes('history_size'), 'the settings table lists the node settings');
    assert.equal(await page.textContent('#node'), ctx.halley.ingest);
    await page.screenshot({ path: '/tmp/halley-dashboard.png', fullPage: true });
  } finally {
    publishing = false;
    await publisher;
    stopSub();
  }

  const elsewhere = requests.filter((u) => new URL(u).origin !== origin);
  assert.deepEqual(elsewhere, [], 'the page asks nothing of another host');
  assert.ok(requests.some((u) => u === `${origin}/dashboard/stream`), `the page opens the stream: ${requests.join(' ')}`);
  assert.deepEqual(page.problems, [], 'no console errors');
  ctx.halley.assertAlive();
});
