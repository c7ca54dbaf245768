// The XMLHttpRequest long-poll loop (re-polling with last_id) in headless
// Chromium: a sequence published one by one and in bursts (so some messages
// arrive between polls), empty answers on timeout, a resume larger than one
// answer, and the gap signal read from a cross-origin response header.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, payloads, publishAll, waitInPage, waitForSequence } from './lib/halley.mjs';

// 8 KiB of outbound per connection: a resume answer carries at most half of
// it, so a resume of 30 KiB must span several polls.
const ctx = setup({ flags: ['--max-outbound-bytes', '8192'] });

const count = (want) => window.t.received.length >= want;

test('XHR long-poll loop receives every message in order, between polls too', { timeout: 90_000 }, async () => {
  await ctx.open('longpoll.html', { ch: 'lp/live', timeout: '1' });
  await waitInPage(ctx, 'first poll answered', () => window.t.ready);

  // One at a time, each waited for.
  const datas = payloads('one', 10);
  const ids = [];
  for (const [i, data] of datas.entries()) {
    ids.push((await ctx.halley.publish('lp/live', data)).id);
    await waitInPage(ctx, `message ${i}`, count, i + 1);
  }
  // An empty answer (the 1 s timeout) keeps the position.
  const polls = await ctx.page.evaluate(() => t.polls.length);
  await waitInPage(ctx, 'a poll timing out empty', (n) => window.t.polls.slice(n).some((p) => p.n === 0), polls);
  // Bursts: most of these land while no poll is parked.
  const burst = payloads('burst', 40);
  ids.push(...(await publishAll(ctx.halley, 'lp/live', burst)));
  datas.push(...burst);
  await waitForSequence(ctx, ids, datas, 'long-poll sequence');
  const state = await ctx.page.evaluate(() => t);
  assert.deepEqual(state.failures, [], 'no failed polls');
  assert.ok(state.polls.every((p) => !p.gapBody && p.gapHeader === null), `no gap signalled: ${JSON.stringify(state.polls)}`);
  ctx.halley.assertAlive();
});

test('a resume larger than one answer comes over several polls', { timeout: 90_000 }, async () => {
  const marker = await ctx.halley.publish('lp/big', 'marker');
  const datas = Array.from({ length: 30 }, (_, i) => `big ${i} `.padEnd(1000, 'x'));
  const ids = await publishAll(ctx.halley, 'lp/big', datas);

  await ctx.open('longpoll.html', { ch: 'lp/big', last_id: marker.id });
  await waitForSequence(ctx, ids, datas, 'the retained messages');
  const live = payloads('live', 5);
  ids.push(...(await publishAll(ctx.halley, 'lp/big', live)));
  datas.push(...live);
  await waitForSequence(ctx, ids, datas, 'resume over several polls');
  const state = await ctx.page.evaluate(() => t);
  const withMessages = state.polls.filter((p) => p.n > 0).length;
  assert.ok(withMessages >= 5, `30 KiB resumed with 4 KiB answers needs several polls; got ${JSON.stringify(state.polls)}`);
  assert.deepEqual(state.failures, [], 'no failed polls');
  ctx.halley.assertAlive();
});

test('a resume from before the retained history is flagged, header readable cross-origin', { timeout: 90_000 }, async () => {
  const early = payloads('retained', 3);
  const ids = await publishAll(ctx.halley, 'lp/gap', early);

  // A well-formed id from before this process started: everything retained
  // comes, with the gap signalled in the body and in X-Halley-Gap (which a
  // cross-origin page can read only if halley exposes it).
  await ctx.open('longpoll.html', { ch: 'lp/gap', last_id: '1-0' });
  await waitForSequence(ctx, ids, early, 'the retained messages');
  const live = payloads('live', 3);
  ids.push(...(await publishAll(ctx.halley, 'lp/gap', live)));
  await waitForSequence(ctx, ids, [...early, ...live], 'resume with a gap');
  const { polls, failures } = await ctx.page.evaluate(() => t);
  assert.deepEqual(failures, [], 'no failed polls');
  assert.deepEqual(polls[0], { n: 3, gapHeader: '1', gapBody: true }, 'the first answer signals the gap');
  assert.ok(polls.slice(1).every((p) => !p.gapBody && p.gapHeader === null), `only the first answer has a gap: ${JSON.stringify(polls)}`);
  ctx.halley.assertAlive();
});
