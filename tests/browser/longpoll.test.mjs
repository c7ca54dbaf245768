// The XMLHttpRequest long-poll loop (re-polling with last_id) in headless
// Chromium: a sequence published one by one and in bursts (so some messages
// arrive between polls), empty answers on timeout, a resume larger than one
// answer, and the gap signal read from a cross-origin response header.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, payloads, sequence, waitForEmptyPoll } from './lib/halley.mjs';

// 8 KiB of outbound per connection: a resume answer carries at most half of
// it, so a resume of 30 KiB must span several polls.
const ctx = setup({ flags: ['--max-outbound-bytes', '8192'] });

test('XHR long-poll loop receives every message in order, between polls too', { timeout: 90_000 }, async () => {
  await ctx.openReady('longpoll.html', { ch: 'lp/live', timeout: '1' }, 'first poll answered');
  const seq = sequence(ctx, 'lp/live');
  // One at a time, each waited for.
  await seq.oneByOne(payloads('one', 10));
  // An empty answer (the 1 s timeout) keeps the position.
  await waitForEmptyPoll(ctx);
  // Bursts: most of these land while no poll is parked.
  await seq.publish(payloads('burst', 40));
  await seq.expect('long-poll sequence');
  const state = await ctx.page.evaluate(() => t);
  assert.deepEqual(state.failures, [], 'no failed polls');
  assert.ok(state.polls.every((p) => !p.gapBody && p.gapHeader === null), `no gap signalled: ${JSON.stringify(state.polls)}`);
  ctx.halley.assertAlive();
});

test('a resume larger than one answer comes over several polls', { timeout: 90_000 }, async () => {
  const marker = await ctx.halley.publish('lp/big', 'marker');
  const seq = sequence(ctx, 'lp/big');
  await seq.publish(Array.from({ length: 30 }, (_, i) => `big ${i} `.padEnd(1000, 'x')));

  await ctx.open('longpoll.html', { ch: 'lp/big', last_id: marker.id });
  await seq.expect('the retained messages');
  await seq.publish(payloads('live', 5));
  await seq.expect('resume over several polls');
  const state = await ctx.page.evaluate(() => t);
  const withMessages = state.polls.filter((p) => p.n > 0).length;
  assert.ok(withMessages >= 5, `30 KiB resumed with 4 KiB answers needs several polls; got ${JSON.stringify(state.polls)}`);
  assert.deepEqual(state.failures, [], 'no failed polls');
  ctx.halley.assertAlive();
});

test('a resume from before the retained history is flagged, header readable cross-origin', { timeout: 90_000 }, async () => {
  const seq = sequence(ctx, 'lp/gap');
  await seq.publish(payloads('retained', 3));

  // A well-formed id from before this process started: everything retained
  // comes, with the gap signalled in the body and in X-Halley-Gap (which a
  // cross-origin page can read only if halley exposes it).
  await ctx.open('longpoll.html', { ch: 'lp/gap', last_id: '1-0' });
  await seq.expect('the retained messages');
  await seq.publish(payloads('live', 3));
  await seq.expect('resume with a gap');
  const { polls, failures } = await ctx.page.evaluate(() => t);
  assert.deepEqual(failures, [], 'no failed polls');
  assert.deepEqual(polls[0], { n: 3, gapHeader: '1', gapBody: true }, 'the first answer signals the gap');
  assert.ok(polls.slice(1).every((p) => !p.gapBody && p.gapHeader === null), `only the first answer has a gap: ${JSON.stringify(polls)}`);
  ctx.halley.assertAlive();
});
