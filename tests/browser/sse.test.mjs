// EventSource in headless Chromium against halley's SSE transport: a live
// sequence, a page-driven resume with ?last_id=, and the browser's own
// automatic reconnect (with Last-Event-ID) after the network cuts it off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, payloads, publishAll, waitInPage, waitForSequence, startCutProxy, until } from './lib/halley.mjs';

// A short retry: so the automatic reconnect comes quickly. A 1 s heartbeat:
// so SSE comments arrive in the middle of the sequence.
const ctx = setup({ flags: ['--sse-retry-ms', '200', '--heartbeat-secs', '1'] });

/** Mixes in named events: every fifth message is published with event=tick. */
const withEvents = (datas) => datas.map((data, i) => (i % 5 === 4 ? { data, event: 'tick' } : { data }));

test('EventSource receives a published sequence in order, then resumes with ?last_id= after closing', { timeout: 90_000 }, async () => {
  await ctx.open('sse.html', { ch: 'sse/live' });
  await waitInPage(ctx, 'EventSource open', () => window.t.ready);

  const first = payloads('sse', 30);
  const firstIds = await publishAll(ctx.halley, 'sse/live', withEvents(first));
  const got = await waitForSequence(ctx, firstIds, first, 'live sequence');
  const events = got.map((m) => m.event ?? null);
  assert.deepEqual(events, first.map((_, i) => (i % 5 === 4 ? 'tick' : null)), 'event types');

  // The page closes its EventSource; messages published meanwhile must come
  // on the new one, which resumes with ?last_id=<last id seen>.
  await ctx.page.evaluate(() => closeIt());
  const gap = payloads('while-closed', 10);
  const gapIds = await publishAll(ctx.halley, 'sse/live', gap);
  await ctx.page.evaluate(() => reopen());
  await waitInPage(ctx, 'EventSource reopened', () => window.t.ready && window.t.opens >= 2);
  const after = payloads('after-reopen', 10);
  const afterIds = await publishAll(ctx.halley, 'sse/live', after);
  await waitForSequence(ctx, [...firstIds, ...gapIds, ...afterIds], [...first, ...gap, ...after], 'across the resume');
  const state = await ctx.page.evaluate(() => window.t);
  assert.equal(state.opens, 2, `two opens, no unplanned reconnects: ${JSON.stringify(state.states)}`);
  ctx.halley.assertAlive();
});

test("the browser's own reconnect after a cut connection resumes with Last-Event-ID", { timeout: 90_000 }, async () => {
  // The page talks to halley through a proxy that can drop its connection,
  // as a network failure or a restarting load balancer would.
  const proxy = await startCutProxy(ctx.halley.public);
  ctx.extras.push(proxy);
  await ctx.open('sse.html', { ch: 'sse/auto', halley: proxy.url });
  await waitInPage(ctx, 'EventSource open', () => window.t.ready);

  const before = payloads('before-cut', 10);
  const beforeIds = await publishAll(ctx.halley, 'sse/auto', before);
  await waitForSequence(ctx, beforeIds, before, 'before the cut');

  // Cut the connection and hold the browser's reconnect until messages have
  // been published while it was away.
  proxy.hold();
  const headsBefore = proxy.heads.length;
  proxy.cutAll();
  await waitInPage(ctx, 'EventSource noticing the cut', () => window.t.errors >= 1);
  const reconnect = await waitHead(proxy, headsBefore);
  const during = payloads('during-cut', 10);
  const duringIds = await publishAll(ctx.halley, 'sse/auto', during);
  proxy.release();
  await waitInPage(ctx, 'EventSource reconnected', () => window.t.opens >= 2);

  const lastEventId = reconnect.match(/^last-event-id:\s*(.*)$/im)?.[1];
  assert.equal(lastEventId, beforeIds.at(-1), `the reconnect sent Last-Event-ID of the last message seen; head:\n${reconnect}`);

  const afterCut = payloads('after-cut', 10);
  const afterIds = await publishAll(ctx.halley, 'sse/auto', afterCut);
  await waitForSequence(ctx, [...beforeIds, ...duringIds, ...afterIds], [...before, ...during, ...afterCut], 'across the automatic reconnect');
  ctx.halley.assertAlive();
});

test('CR and CRLF in a payload reach EventSource as LF, as documented', { timeout: 90_000 }, async () => {
  await ctx.open('sse.html', { ch: 'sse/crlf' });
  await waitInPage(ctx, 'EventSource open', () => window.t.ready);
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
