// fetch() with a ReadableStream reader on ?transport=stream (NDJSON) in
// headless Chromium: a live sequence with heartbeats in between, then a
// resume through a Last-Event-ID header (which makes the browser send a
// CORS preflight first).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, payloads, publishAll, waitInPage, waitForSequence, startCutProxy } from './lib/halley.mjs';

const ctx = setup({ flags: ['--heartbeat-secs', '1'] });


test('fetch() NDJSON stream receives every message in order, then resumes with Last-Event-ID', { timeout: 90_000 }, async () => {
  // Through a (never cutting) proxy, to see the requests the browser made.
  const proxy = await startCutProxy(ctx.halley.public);
  ctx.extras.push(proxy);
  await ctx.open('stream.html', { ch: 'stream/live', halley: proxy.url });
  await waitInPage(ctx, 'stream response started', () => window.t.ready);

  const first = payloads('stream', 30);
  const firstIds = await publishAll(ctx.halley, 'stream/live', first);
  await waitForSequence(ctx, firstIds, first, 'live sequence');
  // A heartbeat (blank line) arrives and is told apart from messages.
  await waitInPage(ctx, 'a heartbeat', () => window.t.heartbeats >= 1);

  await ctx.page.evaluate(() => closeIt());
  const gap = payloads('while-closed', 10);
  const gapIds = await publishAll(ctx.halley, 'stream/live', gap);
  await ctx.page.evaluate(() => reopen());
  await waitInPage(ctx, 'stream reopened', () => window.t.ready && window.t.opens >= 2);
  const after = payloads('after-reopen', 10);
  const afterIds = await publishAll(ctx.halley, 'stream/live', after);
  await waitForSequence(ctx, [...firstIds, ...gapIds, ...afterIds], [...first, ...gap, ...after], 'across the resume');
  const state = await ctx.page.evaluate(() => t);
  assert.deepEqual(state.failures, [], 'no stream failures');
  assert.deepEqual(state.ends, [], 'no end events');
  assert.ok(state.contentTypes.every((ct) => ct.startsWith('application/x-ndjson')), `content types: ${state.contentTypes}`);
  // The resume header made the browser ask first; halley allowed it.
  const preflight = proxy.heads.find((h) => h.startsWith('OPTIONS /sub/stream/live'));
  assert.match(preflight ?? '', /^access-control-request-headers:.*last-event-id/im, `a preflight for Last-Event-ID; heads: ${JSON.stringify(proxy.heads)}`);
  const resume = proxy.heads.filter((h) => h.startsWith('GET /sub/stream/live')).at(-1);
  assert.match(resume, new RegExp(`^last-event-id: ${firstIds.at(-1)}$`, 'im'), 'the resume carried Last-Event-ID');
  ctx.halley.assertAlive();
});
