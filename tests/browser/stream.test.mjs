// fetch() with a ReadableStream reader on ?transport=stream (NDJSON) in
// headless Chromium: a live sequence with heartbeats in between, then a
// resume through a Last-Event-ID header (which makes the browser send a
// CORS preflight first).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, payloads, waitInPage, sequence, resumeAfterClose } from './lib/halley.mjs';

const ctx = setup({ flags: ['--heartbeat-secs', '1'] });

test('fetch() NDJSON stream receives every message in order, then resumes with Last-Event-ID', { timeout: 90_000 }, async () => {
  // Through a (never cutting) proxy, to see the requests the browser made.
  const proxy = await ctx.cutProxy();
  await ctx.openReady('stream.html', { ch: 'stream/live', halley: proxy.url }, 'stream response started');
  const seq = sequence(ctx, 'stream/live');
  const firstIds = await seq.publish(payloads('stream', 30));
  await seq.expect('live sequence');
  // A heartbeat (blank line) arrives and is told apart from messages.
  await waitInPage(ctx, 'a heartbeat', () => window.t.heartbeats >= 1);

  await resumeAfterClose(ctx, seq, 'stream reopened');
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
