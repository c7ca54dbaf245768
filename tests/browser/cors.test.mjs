// cors_origins as a browser enforces it: halley started with
// --cors-origins <the page server's origin> serves an EventSource on that
// origin, while the same page from another origin is refused by the browser
// (halley leaves out Access-Control-Allow-Origin); and the default `*` lets a
// fetch() long-poll from any origin through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, payloads, publishAll, sequence, waitInPage, waitForSequence, servePages } from './lib/halley.mjs';

const ctx = setup({ flags: (c) => ['--cors-origins', c.pages.origin] });

test('an EventSource on the listed origin receives the sequence', { timeout: 90_000 }, async () => {
  await ctx.openReady('sse.html', { ch: 'cors/allowed' }, 'EventSource open');
  const seq = sequence(ctx, 'cors/allowed');
  await seq.publish(payloads('allowed', 20));
  await seq.expect('allowed origin');
  const state = await ctx.page.evaluate(() => t);
  assert.equal(state.errors, 0, `no EventSource errors: ${JSON.stringify(state.states)}`);
  assert.deepEqual(ctx.page.problems, [], 'no console errors or failed requests');
  ctx.halley.assertAlive();
});

test('an EventSource on another origin fails and gets nothing, while the listed origin gets the marker', { timeout: 90_000 }, async () => {
  const other = await servePages();
  ctx.extras.push(other);
  assert.notEqual(other.origin, ctx.pages.origin);
  const ch = 'cors/denied';

  // The control subscriber on the listed origin, open before the other one starts.
  await ctx.openReady('sse.html', { ch }, 'control EventSource open');
  const denied = await ctx.openAt(other.origin, 'sse.html', { ch });
  const deniedView = { page: denied, halley: ctx.halley };
  // A CORS failure is fatal for EventSource: error, then CLOSED, no retry.
  await waitInPage(deniedView, 'the other origin\'s EventSource failing', () => window.t.errors >= 1 && window.t.states.includes('closed'));

  // Publish while both are there; the wait ends when the control page has
  // the marker (the last message), published after the others.
  const seq = sequence(ctx, ch);
  await seq.publish([...payloads('denied', 5), 'marker']);
  await seq.expect('the control page on the listed origin');

  const state = await denied.evaluate(() => t);
  assert.deepEqual(state.received, [], 'nothing reached the other origin');
  assert.equal(state.opens, 0, 'its EventSource never opened');
  assert.equal(state.errors, 1, `one error, no reconnects: ${JSON.stringify(state.states)}`);
  assert.ok(denied.problems.some((p) => /blocked by CORS policy.*Access-Control-Allow-Origin/.test(p)), `the browser says why: ${JSON.stringify(denied.problems)}`);
  assert.deepEqual(ctx.page.problems, [], 'the control page had no console errors or failed requests');
  ctx.halley.assertAlive();
});

test('the default * lets a fetch() long-poll from any origin through', { timeout: 90_000 }, async () => {
  // A halley with the default cors_origins, and pages on two origins, both
  // different from halley's.
  const { halley } = await ctx.another([]);
  const other = await servePages();
  ctx.extras.push(other);
  const ch = 'cors/any';
  const params = { halley: halley.url, ch, api: 'fetch', timeout: '1' };
  const views = [];
  for (const origin of [ctx.pages.origin, other.origin]) {
    const page = await ctx.openAt(origin, 'longpoll.html', params);
    views.push({ page, halley });
  }
  for (const [i, view] of views.entries()) await waitInPage(view, `first poll answered on page ${i}`, () => window.t.ready);

  const datas = payloads('any', 20);
  const ids = await publishAll(halley, ch, datas);
  for (const [i, view] of views.entries()) {
    await waitForSequence(view, ids, datas, `fetch long-poll from origin ${i}`);
    const state = await view.page.evaluate(() => t);
    assert.deepEqual(state.failures, [], `no failed polls on page ${i}`);
    assert.deepEqual(view.page.problems, [], `no console errors or failed requests on page ${i}`);
  }
  halley.assertAlive();
});
