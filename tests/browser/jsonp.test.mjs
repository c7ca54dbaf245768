// The JSONP loop in headless Chromium: each poll is a <script src> with
// ?callback= and the previous answer's last_id. Needs no CORS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, payloads, sequence, waitForEmptyPoll } from './lib/halley.mjs';

const ctx = setup();

test('JSONP script-tag loop receives every message in order, between polls too', { timeout: 90_000 }, async () => {
  await ctx.openReady('jsonp.html', { ch: 'jsonp/live', timeout: '1' }, 'first poll answered');
  const seq = sequence(ctx, 'jsonp/live');
  await seq.oneByOne(payloads('one', 10).map((data, i) => ({ data, event: i % 3 === 0 ? 'tick' : undefined })));
  await waitForEmptyPoll(ctx);
  await seq.publish(payloads('burst', 40));
  const got = await seq.expect('JSONP sequence');
  assert.deepEqual(got.slice(0, 10).map((m) => m.event ?? null), Array.from({ length: 10 }, (_, i) => (i % 3 === 0 ? 'tick' : null)), 'event types');
  const state = await ctx.page.evaluate(() => t);
  assert.deepEqual(state.failures, [], 'no failed polls');
  assert.deepEqual(ctx.page.problems, [], 'no console errors or failed requests');
  ctx.halley.assertAlive();
});
