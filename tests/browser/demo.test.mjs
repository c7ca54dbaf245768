// Halley's own demo page (GET / on the public port, so every transport is
// same-origin) driven like a person would: for each transport in the select,
// choose it, Connect, publish from the form, and see the message in the log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, openPage, waitInPage, DEADLINE_MS } from './lib/halley.mjs';

const ctx = setup();

/** The transports the select offers, and how #status and the log name them. */
const TRANSPORTS = { sse: 'sse', ws: 'ws', stream: 'stream', longpoll: 'long-poll', jsonp: 'jsonp', iframe: 'iframe' };

/** How long one publish may take to show before the next attempt is published. */
const ATTEMPT_MS = 3_000;

test('the demo page: every transport connects and shows what its form publishes', { timeout: 120_000 }, async () => {
  ctx.page = await openPage(ctx.browser, `${ctx.halley.url}/`);
  const page = ctx.page;

  const curl = await page.textContent('#curl');
  assert.ok(curl.includes(`http://${ctx.halley.ingest}/pub/`), `the curl line names the ingest address ${ctx.halley.ingest}: ${curl}`);
  const options = await page.$$eval('#transport option', (os) => os.map((o) => o.value));
  assert.deepEqual(options, Object.keys(TRANSPORTS), 'the transports offered');

  let n = 0;
  for (const [transport, label] of Object.entries(TRANSPORTS)) {
    await page.selectOption('#transport', transport);
    await page.click('#connect');
    await waitInPage(ctx, `${transport}: #status connected`, (l) => document.getElementById('status').textContent.startsWith(`connected (${l})`), label);

    // A long-poll or JSONP subscriber exists only while its poll is parked,
    // and #status says "connected" before that: publish again (a new
    // message each time) until one shows, within the deadline.
    const sent = [];
    const end = Date.now() + DEADLINE_MS;
    let shown = null;
    while (!shown) {
      if (Date.now() > end) throw new Error(`${transport}: none of ${JSON.stringify(sent)} showed within ${DEADLINE_MS} ms\n${await logText(page)}`);
      const data = `demo ${transport} #${++n} héllo ✓ <b>&amp;</b>`;
      const before = await page.textContent('#pubresult');
      await page.fill('#data', data);
      await page.click('#publish button[type=submit]');
      const result = await waitInPage(ctx, `${transport}: #pubresult after publishing`, (b) => {
        const text = document.getElementById('pubresult').textContent;
        return text !== b && text;
      }, before);
      const published = result.match(/^published (\d+-\d+) to \d+ subscriber\(s\)$/);
      assert.ok(published, `${transport}: #pubresult says published: ${result}`);
      sent.push({ id: published[1], data });
      try {
        shown = await page.waitForFunction(
          ({ sent, label }) => {
            for (const li of document.querySelectorAll('#log li')) {
              const meta = li.querySelector('.meta').textContent;
              const text = li.lastChild.textContent;
              const hit = sent.find((s) => meta.startsWith(`${s.id} `) && meta.endsWith(` via ${label}`) && text === s.data);
              if (hit) return hit;
            }
            return null;
          },
          { sent, label },
          { timeout: Math.min(ATTEMPT_MS, Math.max(1, end - Date.now())), polling: 50 },
        );
      } catch (e) {
        if (!/Timeout/i.test(e.message)) throw e;
      }
    }
    await page.click('#disconnect');
    await waitInPage(ctx, `${transport}: #status disconnected`, () => document.getElementById('status').textContent === 'disconnected');
  }

  // No transport showed a message twice (switching resumed from the last
  // id). Across transports the same id can show twice: Disconnect removes a
  // parked JSONP <script> but the browser still runs its answer, whose
  // callback still shows what it carries (a demo page bug, see README).
  const metas = await page.$$eval('#log li .meta', (ms) => ms.map((m) => m.textContent));
  assert.equal(new Set(metas).size, metas.length, `no message shown twice by one transport:\n${await logText(page)}`);
  await page.screenshot({ path: '/tmp/halley-demo.png', fullPage: true });
  // Left out: the page has no icon (and halley none at /favicon.ico), and
  // Disconnect aborts the streams and polls it had open.
  const problems = page.problems.filter(
    (p) => !/ \(at http:\/\/[^ ]+\/favicon\.ico\)$/.test(p) && !/^requestfailed: http:\/\/[^ ]+\/sub\/news\?\S* net::ERR_ABORTED$/.test(p),
  );
  assert.deepEqual(problems, [], 'no console errors or failed requests');
  ctx.halley.assertAlive();
});

function logText(page) {
  return page.$$eval('#log li', (lis) => lis.map((li) => li.textContent).join('\n')).catch((e) => `(log unreadable: ${e.message})`);
}

test('the demo page: its live view shows named events, reconnects and the catch-up after Connect', { timeout: 60_000 }, async () => {
  ctx.page = await openPage(ctx.browser, `${ctx.halley.url}/`);
  const page = ctx.page;
  await page.fill('#channel', 'live-view');
  await page.selectOption('#transport', 'sse');
  await page.click('#connect');
  await waitInPage(ctx, '#status connected (sse)', () => document.getElementById('status').textContent === 'connected (sse)');

  // A named event published from the form arrives over SSE with its name.
  await page.fill('#event', 'alert');
  await page.fill('#data', 'named one');
  await page.click('#publish button[type=submit]');
  await waitInPage(ctx, 'the named event in the log', () =>
    [...document.querySelectorAll('#log li')].some((li) => li.lastChild.textContent === 'named one' && li.querySelector('.event')?.textContent === 'event: alert'));
  assert.ok((await page.textContent('#curl')).endsWith('/pub/live-view?event=alert'), 'the curl line carries the event');

  // Away: Disconnect, two messages published meanwhile, Connect: they come
  // first, marked as caught up, after a note naming the resume point.
  await page.click('#disconnect');
  const lastId = await page.textContent('#lastid');
  const away = [await ctx.halley.publish('live-view', 'while away 1'), await ctx.halley.publish('live-view', 'while away 2')];
  await new Promise((r) => setTimeout(r, 20)); // the connect time must be after the ids' milliseconds
  await page.click('#connect');
  const shown = await waitInPage(ctx, 'the messages published while away, caught up', (ids) => {
    const items = [...document.querySelectorAll('#log li')];
    const hits = ids.map((id) => items.find((li) => li.querySelector('.meta').textContent.startsWith(`${id} `)));
    return hits.every((li) => li && li.querySelector('.catchup')) && items.map((li) => li.textContent);
  }, away.map((a) => a.id));
  assert.ok(shown.some((t) => t.includes(`connected (sse), resuming after ${lastId}`)), `a note names the resume point ${lastId}:\n${shown.join('\n')}`);
  assert.ok(shown.some((t) => t.includes(`disconnected; Connect resumes after ${lastId}`)), shown.join('\n'));
  assert.match(await page.textContent('#counts'), /^3 messages, 1 named events, 0 reconnects$/);

  // A live message after the catch-up is not marked.
  const live = await ctx.halley.publish('live-view', 'live again');
  const mark = await waitInPage(ctx, 'the live message', (id) => {
    const li = [...document.querySelectorAll('#log li')].find((l) => l.querySelector('.meta').textContent.startsWith(`${id} `));
    return li && { catchup: !!li.querySelector('.catchup') };
  }, live.id);
  assert.equal(mark.catchup, false, 'a live message is not marked caught up');
  ctx.halley.assertAlive();
});
