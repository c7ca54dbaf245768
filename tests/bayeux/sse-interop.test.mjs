// A CometD client (each transport in turn) and a plain SSE subscriber on the
// same halley channel see each other's messages: what the CometD client
// publishes to /chat/room reaches GET /sub/chat/room as the JSON text of its
// data; what is published on the ingest port (as the SSE side's application
// would) reaches the CometD client as the JSON value of the payload, or as a
// string when the payload is not JSON.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { startHalley, makeClient, cleanup, until, sseSubscribe, DEADLINE_MS } from './lib/harness.mjs';

const ctx = { halley: null };
before(async () => {
  ctx.halley = await startHalley([]);
});
const { track } = cleanup(() => ctx.halley);

for (const transport of ['long-polling', 'callback-polling', 'websocket']) {
  test(`${transport} CometD client and an SSE subscriber on /chat/room see each other's messages`, { timeout: 3 * DEADLINE_MS }, async () => {
    const sse = await sseSubscribe(ctx.halley, 'chat/room');
    try {
      assert.match(sse.contentType, /^text\/event-stream/);
      const c = track(makeClient(ctx.halley, transport));
      const hs = await c.handshake();
      assert.equal(hs.successful, true, JSON.stringify(hs));
      assert.equal(c.cometd.getTransport()?.type, transport);
      const got = [];
      const { reply } = await c.subscribe('/chat/room', (m) => got.push(m.data));
      assert.equal(reply.successful, true, JSON.stringify(reply));

      // CometD → SSE (and back to the CometD client itself).
      const fromCometd = [{ from: 'cometd', text: `hello over ${transport}`, n: 1 }, `a string with "quotes" and ünïcödé`, [1, 2.5, 'three', null, true], 7];
      for (const data of fromCometd) {
        const ack = await c.publish('/chat/room', data);
        assert.equal(ack.successful, true, `publish ${JSON.stringify(data)}: ${JSON.stringify(ack)}`);
      }
      for (const [i, data] of fromCometd.entries()) {
        const ev = await sse.next(i + 1);
        assert.deepEqual(JSON.parse(ev.data), data, `SSE event ${i + 1} is the JSON text of the CometD data: ${ev.data}`);
        assert.ok(ev.id, 'SSE event has an id');
      }
      // Compact JSON text, exactly (no object here, so no key order to differ).
      assert.equal(sse.events[1].data, JSON.stringify(fromCometd[1]));
      assert.equal(sse.events[2].data, JSON.stringify(fromCometd[2]));
      assert.equal(sse.events[3].data, '7');

      // SSE side → CometD: a JSON body arrives as its value, anything else as a string.
      const fromIngest = ['{"from":"sse side","list":[1,{"x":null}],"n":2}', 'just words, not JSON', '{"unterminated": ', '"a JSON string"', '[]'];
      const ids = [];
      for (const body of fromIngest) ids.push((await ctx.halley.publish('chat/room', body)).id);
      await until(() => got.length >= fromCometd.length + fromIngest.length, `CometD deliveries: have ${JSON.stringify(got)}\n${c.describe()}`);
      assert.deepEqual(got, [
        ...fromCometd,
        { from: 'sse side', list: [1, { x: null }], n: 2 },
        'just words, not JSON',
        '{"unterminated": ',
        'a JSON string',
        [],
      ]);
      // The SSE subscriber gets those payloads byte for byte, with the same ids.
      for (const [i, body] of fromIngest.entries()) {
        const ev = await sse.next(fromCometd.length + i + 1);
        assert.equal(ev.data, body);
        assert.equal(ev.id, ids[i]);
      }
      // The Bayeux deliveries carry the hub's ids, the same the SSE events carry.
      const deliveryIds = c.deliveries('/chat/room').map((m) => m.id);
      assert.deepEqual(deliveryIds, sse.events.map((e) => e.id), 'Bayeux delivery ids vs SSE ids');
      assert.equal(sse.events.length, fromCometd.length + fromIngest.length, `SSE events: ${JSON.stringify(sse.events)}`);
      await c.close();
    } finally {
      sse.close();
    }
  });
}
