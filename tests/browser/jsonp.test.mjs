// The JSONP loop in headless Chromium: each poll is a <script src> with
// ?callback= and the previous answer's last_id. Needs no CORS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, payloads, publishAll, waitInPage, waitForSequence } from './lib/halley.mjs';

const ctx = setup();

const count = (want) => window.t.received.length >= want;

test('JSONP script-tag loop receives every message in order, between polls too', { timeout: 90_000 }, async () => {
  await ctx.open('jsonp.html', { ch: 'jsonp/live', timeout: '1' });
  await waitInPage(ctx, 'first poll answered', () => window.t.ready);

  const datas = payloads('one', 10);
  const ids = [];
  for (const [i, data] of datas.entries()) {
    ids.push((await ctx.halley.publish('jsonp/live', data, { event: i % 3 === 0 ? 'tick' : undefined })).id);
    await waitInPage(ctx, `message ${i}`, count, i + 1);
  }
  const polls = await ctx.page.evaluate(() => t.polls.length);
  await waitInPage(ctx, 'a poll timing out empty', (n) => window.t.polls.slice(n).some((p) => p.n === 0), polls);
  const burst = payloads('burst', 40);
  ids.push(...(await publishAll(ctx.halley, 'jsonp/live', burst)));
  datas.push(...burst);
  const got = await waitForSequence(ctx, ids, datas, 'JSONP sequence');
  assert.deepEqual(got.slice(0, 10).map((m) => m.event ?? null), datas.slice(0, 10).map((_, i) => (i % 3 === 0 ? 'tick' : null)), 'event types');
  const state = await ctx.page.evaluate(() => t);
  assert.deepEqual(state.failures, [], 'no failed polls');
  assert.deepEqual(ctx.page.problems, [], 'no console errors or failed requests');
  ctx.halley.assertAlive();
});
