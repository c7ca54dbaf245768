// The forever iframe in headless Chromium: a hidden <iframe> on
// ?transport=iframe whose scripts call parent.push(...) (or the page's own
// ?callback= name), with payloads built to break out of a <script>; and the
// planned end at max_stream_age_secs, after which the page points the iframe
// again with last_id= and nothing is lost or repeated.
//
// Halley's frame calls a function of its parent window, which a browser
// allows only when the parent is on the frame's origin. So these pages reach
// halley through their own origin (the page server forwards /sub/ to halley,
// as a site's reverse proxy would); the last test shows what a page of
// another origin gets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, payloads, waitInPage, sequence, until } from './lib/halley.mjs';

const ctx = setup();

/** payloads() plus text aimed at the HTML parser around a <script>. */
function breakouts(prefix, n) {
  const extra = [
    (i) => `${prefix} ${i} <!-- opens a comment`,
    (i) => `${prefix} ${i} <!--<script> the double-escaped state`,
    (i) => `${prefix} ${i} & &amp; &lt;/script&gt; &#x3c;`,
    (i) => `${prefix} ${i} 'single' "double" \`back\` \\u003c`,
    (i) => `${prefix} ${i} \u2028 alone, and \u2029`,
    (i) => `${prefix} ${i} ]]> --> </SCRIPT > </script\t>`,
    (i) => `${prefix} ${i} ünïcödé ✓ 日本語 🚀 \u0000 nul`,
  ];
  const base = payloads(prefix, n);
  return base.map((d, i) => (i % 2 ? extra[(i >> 1) % extra.length](i) : d));
}

/** Publishes a marker and opens the page resuming after it, so no message can race the frame's registration. */
async function openAfterMarker(ch, params = {}) {
  const marker = await ctx.halley.publish(ch, 'marker (not expected)');
  await ctx.open('iframe.html', { halley: ctx.pages.origin, ch, last_id: marker.id, ...params });
}

test('forever iframe receives every message in order, script breakouts included', { timeout: 90_000 }, async () => {
  await openAfterMarker('iframe/live');
  const seq = sequence(ctx, 'iframe/live');
  // Published before the frame registered: they come as its resume.
  await seq.publish(breakouts('early', 6));
  await seq.expect('resumed part');
  // Now it is registered: these go out live, one at a time then a burst.
  await seq.oneByOne(breakouts('one', 8));
  await seq.publish(breakouts('burst', 40));
  await seq.expect('iframe sequence');
  const state = await ctx.page.evaluate(() => t);
  assert.deepEqual(state.ends, [], 'no end');
  assert.equal(state.frames.length, 1, 'one frame, never re-pointed');
  assert.deepEqual(ctx.page.problems, [], 'no console errors or failed requests');
  ctx.halley.assertAlive();
});

test('?callback=onMsg: the frame calls parent.onMsg', { timeout: 90_000 }, async () => {
  await openAfterMarker('iframe/cb', { callback: 'onMsg' });
  assert.equal(await ctx.page.evaluate(() => typeof window.push), 'undefined', 'the page defines onMsg only');
  const seq = sequence(ctx, 'iframe/cb');
  await seq.publish(breakouts('cb', 30));
  await seq.expect('onMsg sequence');
  const state = await ctx.page.evaluate(() => t);
  assert.match(state.frames[0], /[?&]callback=onMsg(&|$)/, 'the frame asked for onMsg');
  assert.deepEqual(ctx.page.problems, [], 'no console errors or failed requests');
  ctx.halley.assertAlive();
});

test('the end at max_stream_age_secs: the page re-points with last_id and gets everything exactly once', { timeout: 90_000 }, async () => {
  // Its own halley: every stream ends after 2 s.
  const { halley, pages } = await ctx.another(['--max-stream-age-secs', '2']);
  const ch = 'iframe/age';
  const marker = await halley.publish(ch, 'marker (not expected)');
  // hold=1: at the first end the page waits for resume(), so messages are
  // certainly published while it has no frame; later ends re-point at once.
  const page = await ctx.openAt(pages.origin, 'iframe.html', { halley: pages.origin, ch, last_id: marker.id, hold: '1' });
  const view = { page, halley };
  const seq = sequence(view, ch);
  const { ids } = seq;
  const publishOne = (prefix) => seq.publish([breakouts(prefix, ids.length + 1).at(-1)]);
  // Up to the first end: one at a time, each waited for (or for the end).
  while (!(await page.evaluate(() => t.held))) {
    await publishOne('before-end');
    await waitInPage(view, `message ${ids.length} or the end`, (n) => window.t.received.length >= n || window.t.held, ids.length);
  }
  // While the page has no frame.
  for (let i = 0; i < 5; i++) await publishOne('while-away');
  await page.evaluate(() => resume());
  // Across the second end, which the page follows by itself.
  const endsSeen = () => page.evaluate(() => t.ends.length);
  while ((await endsSeen()) < 2) {
    await publishOne('across-second-end');
    await waitInPage(view, `message ${ids.length} or the second end`, (n) => window.t.received.length >= n || window.t.ends.length >= 2, ids.length);
  }
  for (let i = 0; i < 5; i++) await publishOne('after-second-end');
  await seq.expect('across two ends');

  const state = await page.evaluate(() => t);
  assert.deepEqual(state.ends.slice(0, 2), [{ end: 'max-age', reconnect: true }, { end: 'max-age', reconnect: true }], 'the end envelopes');
  assert.ok(state.frames.length >= 3, `re-pointed after each end: ${JSON.stringify(state.frames)}`);
  for (const src of state.frames.slice(1)) {
    const last = new URL(src).searchParams.get('last_id');
    assert.ok(ids.includes(last), `each re-point resumes from a received id: ${src}`);
  }
  assert.deepEqual(page.problems, [], 'no console errors or failed requests');
  halley.assertAlive();
});

test('a page of another origin: the browser blocks the frame calling parent.push, nothing arrives', { timeout: 90_000 }, async () => {
  // Both pages resume after the same marker; the control page is on the
  // frame's origin (through the forwarding page server), the other page
  // points its iframe straight at halley, another origin.
  const ch = 'iframe/cross';
  const marker = await ctx.halley.publish(ch, 'marker (not expected)');
  await ctx.open('iframe.html', { halley: ctx.pages.origin, ch, last_id: marker.id });
  const cross = await ctx.openAt(ctx.pages.origin, 'iframe.html', { halley: ctx.halley.url, ch, last_id: marker.id });
  const seq = sequence(ctx, ch);
  await seq.publish(['one', 'two', 'three']);
  await seq.expect('the same-origin control page');
  await until(() => cross.problems.some((p) => /cross-origin frame/.test(p)), `the cross-origin page's SecurityError (problems: ${JSON.stringify(cross.problems)})`);
  assert.deepEqual(await cross.evaluate(() => t.received), [], 'nothing reached the page of another origin');
  ctx.halley.assertAlive();
});
