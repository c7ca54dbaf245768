// A browser WebSocket on halley's public port: a live sequence, then
// changing channels on the same connection with {"subscribe":[...]} and
// {"unsubscribe":[...]} while messages are published to both channels around
// every step, and a resume with ?last_id= after the page closes the socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, payloads, waitInPage, sequence, resumeAfterClose, assertExactSequence } from './lib/halley.mjs';

const ctx = setup();

const A = 'ws/a';
const B = 'ws/b';

/** Ids compare as (milliseconds, sequence). */
function idLess(x, y) {
  const [xm, xs] = x.split('-').map(BigInt);
  const [ym, ys] = y.split('-').map(BigInt);
  return xm < ym || (xm === ym && xs < ys);
}

test('subscribe and unsubscribe on a live socket: exactly the messages the acks promise', { timeout: 90_000 }, async () => {
  // The 101 (and so `open`) comes once the channel is registered.
  await ctx.openReady('ws.html', { ch: A }, 'socket open');

  // Every publish, in order, with whether the page must get it: 'yes', 'no',
  // or 'maybe' (published while a command was in flight).
  const published = [];
  const pub = async (channel, data, must) => {
    const { id } = await ctx.halley.publish(channel, data);
    published.push({ id, channel, data, must });
  };
  const received = () => ctx.page.evaluate(() => t.received);
  const waitFor = (id, what) => waitInPage(ctx, what, (id) => window.t.received.some((m) => m.id === id), id);
  /**
   * Sends `cmd` on the socket and, while it is in flight, publishes three
   * rounds of a message to a (`mustA`) and one to b (`mustB`), named after
   * `doing`; then waits for the `n`-th ack and checks it is `ack`.
   */
  const whileCommand = async (cmd, doing, mustA, mustB, n, ack) => {
    await ctx.page.evaluate((c) => command(c), cmd);
    for (let i = 0; i < 3; i++) {
      await pub(A, `a while ${doing} ${i}`, mustA);
      await pub(B, `b while ${doing} ${i}`, mustB);
    }
    await waitInPage(ctx, `the ack of ${JSON.stringify(cmd)}`, (n) => window.t.acks.length >= n, n);
    assert.deepEqual((await ctx.page.evaluate(() => t.acks))[n - 1], ack, `the ack of ${JSON.stringify(cmd)}`);
  };

  // 1. On a only: b is not subscribed yet.
  await pub(B, 'b before subscribe 0', 'no');
  for (const data of payloads('a only', 10)) await pub(A, data, 'yes');
  await pub(B, 'b before subscribe 1', 'no');
  await waitFor(published.filter((p) => p.must === 'yes').at(-1).id, 'the a-only sequence');

  // 2. Subscribe to b; publish to both while the command is in flight.
  await whileCommand({ subscribe: [B] }, 'subscribing', 'yes', 'maybe', 1, { subscribed: [B] });

  // 3. Both channels, interleaved: all of it, in publish order.
  const both = payloads('both', 20);
  for (const [i, data] of both.entries()) await pub(i % 2 ? B : A, data, 'yes');
  await waitFor(published.at(-1).id, 'the interleaved sequence');

  // 4. Unsubscribe from a; publish to both while the command is in flight.
  await whileCommand({ unsubscribe: [A] }, 'unsubscribing', 'maybe', 'yes', 2, { unsubscribed: [A] });

  // 5. After the ack: nothing of a, then a marker on b that must come.
  for (const data of payloads('a after unsubscribe', 5)) await pub(A, data, 'no');
  await pub(B, 'b marker', 'yes');
  await waitFor(published.at(-1).id, 'the b marker');

  const got = await received();
  // Nothing twice, ids increasing (one fan-out thread, one socket).
  for (let i = 1; i < got.length; i++) {
    assert.ok(idLess(got[i - 1].id, got[i].id), `increasing ids at ${i}: ${got[i - 1].id} then ${got[i].id}`);
  }
  // The 'maybe' ones that came: b's are the last ones of their window (the
  // channel started at one point), a's the first ones of theirs.
  const gotIds = new Set(got.map((m) => m.id));
  const window2 = published.filter((p) => p.must === 'maybe' && p.channel === B).map((p) => gotIds.has(p.id));
  const window4 = published.filter((p) => p.must === 'maybe' && p.channel === A).map((p) => gotIds.has(p.id));
  assert.ok(window2.every((has, i) => !has || window2.slice(i).every(Boolean)), `b while subscribing: a suffix came: ${window2}`);
  assert.ok(window4.every((has, i) => has || window4.slice(i).every((x) => !x)), `a while unsubscribing: a prefix came: ${window4}`);
  // Exactly: every 'yes', no 'no', the 'maybe' ones that came, in publish order.
  const expected = published.filter((p) => p.must === 'yes' || (p.must === 'maybe' && gotIds.has(p.id)));
  assertExactSequence(got, expected.map((p) => p.id), expected.map((p) => p.data), 'across subscribe and unsubscribe');
  for (const m of got) assert.equal(m.channel, published.find((p) => p.id === m.id).channel, `channel of ${m.id}`);

  // On the wire: no message of a after the unsubscribed ack.
  const frames = await ctx.page.evaluate(() => t.frames);
  const ackAt = frames.findIndex((f) => f.kind === 'ack' && f.ack.unsubscribed);
  const lateA = frames.slice(ackAt + 1).filter((f) => f.kind === 'message' && f.channel === A);
  assert.deepEqual(lateA, [], 'no message of a after {"unsubscribed":["a"]}');
  const state = await ctx.page.evaluate(() => t);
  assert.deepEqual(state.errors, [], 'no error answers');
  assert.deepEqual(state.closes, [], 'the socket stayed open');
  assert.deepEqual(ctx.page.problems, [], 'no console errors or failed requests');
  ctx.halley.assertAlive();
});

test('after the page closes the socket, a new one with ?last_id= resumes exactly', { timeout: 90_000 }, async () => {
  const ch = 'ws/resume';
  await ctx.openReady('ws.html', { ch }, 'socket open');
  const seq = sequence(ctx, ch);
  await seq.publish(payloads('ws', 30));
  await seq.expect('live sequence');

  await resumeAfterClose(ctx, seq, 'socket reopened', ch);

  const state = await ctx.page.evaluate(() => t);
  // Halley answers the page's close frame with its code (no reason).
  assert.deepEqual(state.closes.map(({ code, clean }) => ({ code, clean })), [{ code: 1000, clean: true }], 'the page closed the first socket cleanly; the second is open');
  assert.deepEqual(state.failures, [], 'no error events');
  assert.deepEqual(ctx.page.problems, [], 'no console errors or failed requests');
  ctx.halley.assertAlive();
});
