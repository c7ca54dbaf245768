// The tests every transport runs: the real CometD client configured with
// only that transport, against its own halley. See long-polling.test.mjs,
// callback-polling.test.mjs and websocket.test.mjs.

import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { startHalley, makeClient, cleanup, until, scripts, rawBayeux, DEADLINE_MS } from './harness.mjs';

/** Payloads for client publishes: every JSON type, and text that is hard to carry. */
export const PUBLISHED = [
  { text: 'hello', n: 0 },
  'a plain string',
  42,
  -3.5,
  true,
  false,
  null,
  [1, 'two', { three: 3 }, []],
  'héllo ✓ 日本 🚀',
  'quotes " and \' back\\slash \u2028 \u2029 tab\t nl\n </script><script>x()</script>',
  '',
  {},
  { nested: { deeper: { list: [{ a: 1 }, { b: [true, null] }] } }, 'key with space': 'v' },
];

export function transportSuite(transport) {
  const ctx = { halley: null };
  before(async () => {
    // The default --bayeux-timeout-ms (30 s) is longer than any wait here,
    // so an answer that comes within a wait was not a held connect timing out.
    ctx.halley = await startHalley(['--bayeux-publish-allow', '/open/**,/chat/**']);
  });
  const { track } = cleanup(() => ctx.halley);
  const opts = { timeout: 3 * DEADLINE_MS };

  /** A client of this transport, handshaken and connected (first connect answered). */
  async function connected() {
    const c = track(makeClient(ctx.halley, transport));
    const reply = await c.handshake();
    assert.equal(reply.successful, true, `handshake failed: ${JSON.stringify(reply)}\n${c.describe()}`);
    await until(() => c.connected.some((m) => m.successful), `first /meta/connect answered over ${transport}\n${c.describe()}`);
    return { c, reply };
  }

  /** Waits until `list` has `n` entries, saying what it has otherwise. */
  const waitFor = (c, list, n, what) => until(() => list.length >= n, `${what}: have ${list.length} of ${n}: ${JSON.stringify(list)}\n${c.describe()}`);

  test(`${transport}: handshake negotiates ${transport} only, and the first /meta/connect is answered at once`, opts, async () => {
    const loadsBefore = scripts.loads.length;
    const c = track(makeClient(ctx.halley, transport));
    const reply = await c.handshake();
    assert.equal(reply.successful, true, JSON.stringify(reply));
    assert.equal(typeof reply.clientId, 'string');
    assert.ok(reply.clientId.length >= 8, `clientId ${reply.clientId}`);
    assert.equal(c.cometd.getClientId(), reply.clientId);
    assert.equal(c.cometd.getTransport()?.type, transport, 'the transport in use');
    const sent = c.outgoing.find((m) => m.channel === '/meta/handshake');
    assert.deepEqual(sent.supportedConnectionTypes, [transport], 'the client offered only the transport under test');
    const raw = c.incoming.find((m) => m.channel === '/meta/handshake');
    assert.equal(raw.version, '1.0');
    assert.ok(raw.supportedConnectionTypes.includes(transport), `server types ${raw.supportedConnectionTypes}`);
    assert.equal(raw.id, sent.id, 'handshake id echoed');
    assert.equal(raw.advice?.reconnect, 'retry');
    // halley holds later connects for 30 s; this one must come well before.
    await until(() => c.connected.some((m) => m.successful), `first /meta/connect answered\n${c.describe()}`);
    const first = c.connected.find((m) => m.successful);
    assert.equal(first.clientId, reply.clientId);
    const sentConnect = c.outgoing.find((m) => m.channel === '/meta/connect');
    assert.equal(sentConnect.connectionType, transport);
    if (transport === 'callback-polling') {
      const loads = scripts.loads.slice(loadsBefore);
      assert.ok(loads.length >= 2, `script loads: ${JSON.stringify(loads)}`);
      for (const l of loads.filter((x) => x.status)) {
        assert.equal(l.status, 200, JSON.stringify(l));
        assert.match(l.type, /^text\/javascript/, `JSONP content type of ${l.url}`);
        assert.ok(l.body.startsWith(`${l.callback}([`) && l.body.trimEnd().endsWith(');'), `JSONP body ${l.body}`);
      }
    }
    await c.close();
    assert.deepEqual(scripts.problems, []);
  });

  test(`${transport}: subscriptions to a channel, /one/* and /deep/** get exactly the matching messages, in order`, opts, async () => {
    const { c } = await connected();
    const got = { exact: [], one: [], deep: [] };
    const subs = [
      ['/ex/room', got.exact],
      ['/one/*', got.one],
      ['/deep/**', got.deep],
    ];
    for (const [channel, list] of subs) {
      const { reply } = await c.subscribe(channel, (m) => list.push({ channel: m.channel, data: m.data }));
      assert.equal(reply.successful, true, `subscribe ${channel}: ${JSON.stringify(reply)}`);
      assert.equal(reply.subscription, channel);
    }
    // Published through halley's ingest, one after another (so in this order).
    const plan = [
      ['ex/room', true],
      ['ex/room/sub', false],
      ['one/a', true],
      ['ex/other', false],
      ['one/a/b', false],
      ['one', false],
      ['deep/a', true],
      ['deep/a/b/c', true],
      ['deep', false],
      ['deepx/a', false],
      ['one/b', true],
      ['ex/room', true],
      ['deep/z', true],
      ['ex/room', true],
    ];
    for (const [i, [channel]] of plan.entries()) await ctx.halley.publish(channel, JSON.stringify({ i, channel }));
    const expected = plan.map(([channel, match], i) => match && { channel: `/${channel}`, data: { i, channel } }).filter(Boolean);
    // The last one is on the exact channel: once it is in, everything before it is.
    await waitFor(c, got.exact, expected.filter((m) => m.channel === '/ex/room').length, 'deliveries on /ex/room');
    // What the server sent (before the client's own channel matching): only matches, in order, once each.
    const sent = c.deliveries().map((m) => ({ channel: m.channel, data: m.data }));
    assert.deepEqual(sent, expected, 'deliveries the server sent');
    assert.deepEqual(got.exact, expected.filter((m) => m.channel === '/ex/room'));
    assert.deepEqual(got.one, expected.filter((m) => /^\/one\/[^/]+$/.test(m.channel)));
    assert.deepEqual(got.deep, expected.filter((m) => m.channel.startsWith('/deep/')));
    const ids = c.deliveries().map((m) => m.id);
    assert.equal(new Set(ids).size, ids.length, `delivery ids repeat: ${ids}`);
    await c.close();
  });

  test(`${transport}: client publishes are acknowledged (successful) and delivered in order; a denied channel reports failure`, opts, async () => {
    const { c } = await connected();
    const got = [];
    const { reply } = await c.subscribe('/open/room', (m) => got.push(m.data));
    assert.equal(reply.successful, true, JSON.stringify(reply));
    // Publish all without waiting in between; then collect the callbacks.
    const acks = PUBLISHED.map((data) => c.publish('/open/room', data));
    for (const [i, ack] of (await Promise.all(acks)).entries()) {
      assert.equal(ack.successful, true, `publish #${i} (${JSON.stringify(PUBLISHED[i])}): ${JSON.stringify(ack)}`);
      assert.equal(ack.channel, '/open/room');
    }
    await ctx.halley.publish('open/room', '"end"');
    await waitFor(c, got, PUBLISHED.length + 1, 'deliveries on /open/room');
    assert.deepEqual(got, [...PUBLISHED, 'end']);

    // Not in --bayeux-publish-allow: the callback says so, and nothing is delivered.
    const closed = [];
    await c.subscribe('/closed/room', (m) => closed.push(m.data));
    const denied = await c.publish('/closed/room', { secret: 1 });
    assert.equal(denied.successful, false, `publish to /closed/room: ${JSON.stringify(denied)}`);
    assert.match(String(denied.error), /^403::/, `error of a denied publish: ${JSON.stringify(denied)}`);
    await ctx.halley.publish('closed/room', '"marker"');
    await waitFor(c, closed, 1, 'the marker on /closed/room');
    assert.deepEqual(closed, ['marker'], 'only the ingest marker reached /closed/room');
    await c.close();
  });

  test(`${transport}: after unsubscribe, nothing more of that channel arrives`, opts, async () => {
    const { c } = await connected();
    const a = [];
    const b = [];
    const subA = await c.subscribe('/u/a', (m) => a.push(m.data));
    await c.subscribe('/u/b', (m) => b.push(m.data));
    await ctx.halley.publish('u/a', 'a1');
    await ctx.halley.publish('u/b', 'b1');
    await waitFor(c, b, 1, 'b1');
    assert.deepEqual(a, ['a1']);
    const unsub = await c.unsubscribe(subA.handle);
    assert.equal(unsub.successful, true, JSON.stringify(unsub));
    assert.equal(unsub.subscription, '/u/a');
    const rawUnsub = c.incoming.findLast((m) => m.channel === '/meta/unsubscribe');
    assert.equal(rawUnsub?.successful, true, 'the server acknowledged the unsubscribe');
    const before = c.deliveries('/u/a').length;
    await ctx.halley.publish('u/a', 'a2');
    await ctx.halley.publish('u/a', 'a3');
    await ctx.halley.publish('u/b', 'b2');
    await waitFor(c, b, 2, 'b2 (published after a2 and a3)');
    assert.deepEqual(b, ['b1', 'b2']);
    assert.deepEqual(a, ['a1'], 'the /u/a listener after unsubscribe');
    assert.equal(c.deliveries('/u/a').length, before, `the server still sent /u/a: ${JSON.stringify(c.deliveries('/u/a'))}`);
    await c.close();
  });

  test(`${transport}: disconnect is acknowledged and ends the session`, opts, async () => {
    const { c, reply } = await connected();
    await c.subscribe('/d/x', () => {});
    // Disconnect while the client's next /meta/connect is out (held by halley),
    // which is how a connected client always is.
    await until(() => c.outgoing.filter((m) => m.channel === '/meta/connect').length >= 2, `second /meta/connect sent\n${c.describe()}`);
    const bye = await c.disconnect();
    assert.equal(bye.successful, true, `disconnect callback: ${JSON.stringify(bye, (k, v) => (k === 'transport' || k === 'xhr' ? undefined : v))}\nincoming: ${JSON.stringify(c.incoming.slice(-4))}`);
    assert.equal(bye.channel, '/meta/disconnect');
    await until(() => c.cometd.getStatus() === 'disconnected', 'client status "disconnected"');
    const [after] = await rawBayeux(ctx.halley, [{ channel: '/meta/connect', clientId: reply.clientId, connectionType: 'long-polling', id: 'probe' }]);
    assert.equal(after.successful, false, `connect after disconnect: ${JSON.stringify(after)}`);
    assert.match(after.error, /^402::/);
    assert.equal(after.advice?.reconnect, 'handshake');
    await c.close();
    assert.deepEqual(scripts.problems, []);
  });
}
