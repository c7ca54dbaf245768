// Pushlet clients in headless Chromium: the hidden iframe of the js format
// (stream mode, the frame's scripts calling parent.push(name, value, ...))
// and the XMLHttpRequest pull loop of ajax-pushlet-client.js (xml-strict
// read through responseXML, a refresh after every p_wait). Each receives a
// published sequence, with payloads built to break a <script>, a JS string
// or an XML attribute, exactly once and in order.
//
// The pages reach halley on their own origin through the page server, which
// forwards /pushlet to halley (the iframe's scripts call their parent, which
// a browser allows only on the same origin; ajax-pushlet-client.js, too,
// talks to the server its page came from).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, payloads, waitInPage, sequence } from './lib/halley.mjs';

const ctx = setup();

/** payloads() plus text aimed at the js and xml-strict renderings. */
function hostile(prefix, n) {
  const extra = [
    (i) => `${prefix} ${i} <!-- opens a comment <script>`,
    (i) => `${prefix} ${i} & &amp; &lt;/script&gt; &#x3c; ]]>`,
    (i) => `${prefix} ${i} 'single' "double" \\ \`back\` ')+alert(1)+('`,
    (i) => `${prefix} ${i} \r\n crlf \t tab \u2028 \u2029`,
    (i) => `${prefix} ${i} </pushlet><event p_event="data" msg="forged"/>`,
  ];
  return payloads(prefix, n).map((d, i) => (i % 2 ? extra[(i >> 1) % extra.length](i) : d));
}

/** What the page must receive on `channel`, each `data` published as {"msg": data}. */
const msgs = (channel) => sequence(ctx, channel, { body: (data) => JSON.stringify({ msg: data }) });

test('Pushlet hidden iframe (js, stream) receives a published sequence in order', { timeout: 60_000 }, async () => {
  await ctx.openReady('pushlet-iframe.html', { halley: ctx.pages.origin, subject: '/t' }, 'join-listen-ack in the frame');
  const { ack } = await ctx.page.evaluate(() => t);
  assert.equal(ack.p_mode, 'stream');
  assert.equal(ack.p_format, 'js');
  assert.match(ack.p_id, /^[a-z]{20}$/);
  assert.match(ack.p_sid, /^[a-z]{5}$/);

  // One at a time, each waited for; then a burst.
  const seq = msgs('t');
  await seq.oneByOne(hostile('one', 8));
  await seq.publish(hostile('burst', 40));
  await seq.expect('iframe sequence');

  const state = await ctx.page.evaluate(() => t);
  assert.deepEqual(state.failures, [], 'no protocol failures');
  assert.deepEqual(state.events.slice(0, 2), ['join-listen-ack', 'hb'], 'the ack, then an hb at once');
  assert.equal(state.frames.length, 1, 'one frame, one stream');
  assert.deepEqual(ctx.page.problems, [], 'no console errors or failed requests');
  ctx.halley.assertAlive();
});

test('Pushlet XHR pull loop (xml-strict, responseXML, p_wait) receives a published sequence in order', { timeout: 60_000 }, async () => {
  await ctx.openReady('pushlet-pull.html', { halley: ctx.pages.origin, subject: '/pull' }, 'join-listen-ack');
  // The page waits the first p_wait (2-6 s), then its refresh is held:
  // nothing is queued. The first message answers it; the rest queue up
  // while the page waits again, and come with the next refresh.
  await waitInPage(ctx, 'the first refresh out', () => window.t.pending || window.t.stopped);
  const seq = msgs('pull');
  await seq.publish(hostile('pull', 30));
  await seq.expect('pull sequence');

  const state = await ctx.page.evaluate(() => t);
  assert.deepEqual(state.failures, [], 'no protocol failures');
  assert.equal(state.stopped, null, 'the loop goes on');
  assert.equal(state.ack.p_mode, 'pull');
  assert.equal(state.ack.p_format, 'xml-strict');
  assert.deepEqual(state.responses[0], ['join-listen-ack', 'refresh'], 'the first answer');
  for (const kinds of state.responses.slice(1)) {
    assert.equal(kinds[0], 'refresh-ack', `each refresh answer starts with refresh-ack: ${kinds}`);
    assert.equal(kinds.at(-1), 'refresh', `and ends with refresh: ${kinds}`);
  }
  assert.ok(state.responses[1].includes('data'), `the held refresh was answered by data: ${state.responses[1]}`);
  assert.ok(state.waits.every((w) => w >= 2000 && w <= 6000), `pull p_wait within 2-6 s: ${state.waits}`);
  assert.deepEqual(ctx.page.problems, [], 'no console errors or failed requests');
  ctx.halley.assertAlive();
});
