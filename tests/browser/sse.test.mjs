// EventSource in headless Chromium against halley's SSE transport: a live
// sequence, a page-driven resume with ?last_id=, and the browser's own
// automatic reconnect (with Last-Event-ID) after the network cuts it off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, payloads, publishAll, waitInPage, waitForSequence, sequence, resumeAfterClose, until } from './lib/halley.mjs';

// A short retry: so the automatic reconnect comes quickly. A 1 s heartbeat:
// so SSE comments arrive in the middle of the sequence.
const ctx = setup({ flags: ['--sse-retry-ms', '200', '--heartbeat-secs', '1'] });

/** Mixes in named events: every fifth message is published with event=tick. */
const withEvents = (datas) => datas.map((data, i) => (i % 5 === 4 ? { data, event: 'tick' } : { data }));

test('EventSource receives a published sequence in order, then resumes with ?last_id= after closing', { timeout: 90_000 }, async () => {
  await ctx.openReady('sse.html', { ch: 'sse/live' }, 'EventSource open');
  const seq = sequence(ctx, 'sse/live');
  const first = payloads('sse', 30);
  await seq.publish(withEvents(first));
  const got = await seq.expect('live sequence');
  const events = got.map((m) => m.event ?? null);
  assert.deepEqual(events, first.map((_, i) => (i % 5 === 4 ? 'tick' : null)), 'event types');

  // The page closes its EventSource; messages published meanwhile must come
  // on the new one, which resumes with ?last_id=<last id seen>.
  await resumeAfterClose(ctx, seq, 'EventSource reopened');
  const state = await ctx.page.evaluate(() => window.t);
  assert.equal(state.opens, 2, `two opens, no unplanned reconnects: ${JSON.stringify(state.states)}`);
  ctx.halley.assertAlive();
});

test("the browser's own reconnect after a cut connection resumes with Last-Event-ID", { timeout: 90_000 }, async () => {
  // The page talks to halley through a proxy that can drop its connection,
  // as a network failure or a restarting load balancer would.
  const proxy = await ctx.cutProxy();
  await ctx.openReady('sse.html', { ch: 'sse/auto', halley: proxy.url }, 'EventSource open');
  const seq = sequence(ctx, 'sse/auto');
  const beforeIds = await seq.publish(payloads('before-cut', 10));
  await seq.expect('before the cut');

  // Cut the connection and hold the browser's reconnect until messages have
  // been published while it was away.
  proxy.hold();
  const headsBefore = proxy.heads.length;
  proxy.cutAll();
  await waitInPage(ctx, 'EventSource noticing the cut', () => window.t.errors >= 1);
  const reconnect = await waitHead(proxy, headsBefore);
  await seq.publish(payloads('during-cut', 10));
  proxy.release();
  await waitInPage(ctx, 'EventSource reconnected', () => window.t.opens >= 2);

  const lastEventId = reconnect.match(/^last-event-id:\s*(.*)$/im)?.[1];
  assert.equal(lastEventId, beforeIds.at(-1), `the reconnect sent Last-Event-ID of the last message seen; head:\n${reconnect}`);

  await seq.publish(payloads('after-cut', 10));
  await seq.expect('across the automatic reconnect');
  ctx.halley.assertAlive();
});

test('CR and CRLF in a payload reach EventSource as LF, as documented', { timeout: 90_000 }, async () => {
  await ctx.openReady('sse.html', { ch: 'sse/crlf' }, 'EventSource open');
  const sent = ['a\r\nb', 'x\ry', '\r\n', 'mixed\r\n\rend\n'];
  const ids = await publishAll(ctx.halley, 'sse/crlf', sent);
  await waitForSequence(ctx, ids, sent.map((d) => d.replace(/\r\n?/g, '\n')), 'line breaks');
  ctx.halley.assertAlive();
});

/** Waits (with the deadline) for a request head for /sub/ after index `from`. */
function waitHead(proxy, from) {
  return until(
    () => proxy.heads.slice(from).find((h) => h.startsWith('GET /sub/')),
    `a reconnect request through the proxy (heads so far: ${JSON.stringify(proxy.heads)})`,
  );
}
