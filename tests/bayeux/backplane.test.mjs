// Bayeux across nodes (issue 13): two halley processes on one real
// redis-server (`--redis redis://127.0.0.1:PORT`), a CometD client on each.
// What one client publishes reaches the other, through Redis, and so does
// what is published on either node's ingest port: both clients get every
// message once, in publish order.
//
// A Bayeux subscription has no resume point, and a node may start listening
// to a channel on Redis a moment after it acknowledged the subscription: the
// test publishes warm-up messages until both clients have seen one, and
// leaves them out of the comparison.
//
// This file starts its own redis-server (Debian's package, on a free port
// with its own directory) and stops it by pid in `after`, after the clients
// and both halleys.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHalley, makeClient, until, withDeadline, DEADLINE_MS } from './lib/harness.mjs';
import { killOnExit, forget } from '../common-js/halley-process.mjs';

const REDIS_SERVER = '/usr/bin/redis-server';

/** True when `port` on 127.0.0.1 can be bound now. */
function bindable(port) {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** True when redis on `port` answers PING with +PONG. */
function ping(port) {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let got = '';
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => {
      got += d;
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
  });
}

/**
 * Starts redis-server on a free port below the ephemeral range, in a
 * directory of its own, and waits until it answers PING.
 */
async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'halley-redis-js-'));
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (!(await bindable(port))) continue;
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--protected-mode', 'no', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir, '--logfile', join(dir, 'redis.log')];
    const child = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
    killOnExit(child.pid);
    let exited = null;
    const exit = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        exited = { code, signal };
        forget(child.pid);
        resolve(exited);
      });
    });
    child.on('error', () => {});
    try {
      await until(async () => exited || (await ping(port)), `redis-server on port ${port} answering PING`);
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
    if (exited) continue; // the port was taken meanwhile
    return {
      url: `redis://127.0.0.1:${port}`,
      log: () => {
        try {
          return readFileSync(join(dir, 'redis.log'), 'utf8');
        } catch {
          return '';
        }
      },
      /** SIGTERM, then SIGKILL by pid after 10 s; removes the directory. */
      async stop() {
        if (!exited) {
          child.kill('SIGTERM');
          await withDeadline(exit, 'redis-server exiting on SIGTERM', 10_000).catch(() => {
            child.kill('SIGKILL');
            return withDeadline(exit, 'redis-server exiting on SIGKILL');
          });
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  throw new Error(`could not start ${REDIS_SERVER} on a free port (${dir})`);
}

const ctx = { redis: null, nodes: [], clients: [] };
before(async () => {
  ctx.redis = await startRedis();
  for (let i = 0; i < 2; i++) ctx.nodes.push(await startHalley(['--redis', ctx.redis.url]));
});
after(async () => {
  for (const c of ctx.clients) {
    await withDeadline(c.close(), 'closing a CometD client', 15_000).catch(() => {});
  }
  for (const node of ctx.nodes) {
    try {
      node.assertAlive();
    } finally {
      await node.stop();
    }
  }
  await ctx.redis?.stop();
});

const isWarm = (data) => data !== null && typeof data === 'object' && 'warm' in data;

// One callback-polling client at a time per process (harness.mjs): the
// other node's client uses long-polling then.
for (const transport of ['long-polling', 'websocket', 'callback-polling']) {
  test(`${transport} CometD clients on two nodes share /bp/${transport} through Redis`, { timeout: 4 * DEADLINE_MS }, async () => {
    const channel = `/bp/${transport}`;
    const hub = channel.slice(1);
    const [a, b] = ctx.nodes;
    const ca = makeClient({ ...a, bayeuxUrl: `${a.url}/bayeux` }, transport);
    const cb = makeClient({ ...b, bayeuxUrl: `${b.url}/bayeux` }, transport === 'callback-polling' ? 'long-polling' : transport);
    ctx.clients.push(ca, cb);
    const got = [[], []];
    for (const [i, c] of [ca, cb].entries()) {
      const hs = await c.handshake();
      assert.equal(hs.successful, true, `handshake on node ${i}: ${JSON.stringify(hs)}`);
      const { reply } = await c.subscribe(channel, (m) => got[i].push(m.data));
      assert.equal(reply.successful, true, `subscribe on node ${i}: ${JSON.stringify(reply)}`);
    }

    // Warm up: until both clients have seen a message published on the
    // other node's ingest port.
    const end = Date.now() + DEADLINE_MS;
    for (let k = 0; !(got[0].some(isWarm) && got[1].some(isWarm)); k++) {
      if (Date.now() > end) {
        throw new Error(`warm-up messages never reached both clients: ${JSON.stringify(got)}\n${ca.describe()}\n${cb.describe()}`);
      }
      await ctx.nodes[k % 2].publish(hub, JSON.stringify({ warm: k }));
      await until(() => got[0].some(isWarm) && got[1].some(isWarm), 'warm-up', 500).catch(() => {});
    }

    // Each client publishes through its node, then each node's ingest port.
    const ackA = await ca.publish(channel, { n: 1, from: 'node 0' });
    assert.equal(ackA.successful, true, JSON.stringify(ackA));
    const ackB = await cb.publish(channel, { n: 2, from: 'node 1' });
    assert.equal(ackB.successful, true, JSON.stringify(ackB));
    const ids = [(await a.publish(hub, '{"n":3}')).id, (await b.publish(hub, '"four"')).id];
    for (const id of ids) assert.match(id, /^\d+-\d+$/, 'a Redis stream id');
    const want = [{ n: 1, from: 'node 0' }, { n: 2, from: 'node 1' }, { n: 3 }, 'four'];
    for (const [i, c] of [ca, cb].entries()) {
      const real = () => got[i].filter((d) => !isWarm(d));
      await until(() => real().length >= want.length, `client on node ${i}: have ${JSON.stringify(got[i])}\n${c.describe()}`);
      assert.deepEqual(real(), want, `client on node ${i} (${c.cometd.getTransport()?.type})`);
      // Exactly once: what the server sent, before the client's own matching.
      const sent = c.deliveries(channel).map((m) => m.data).filter((d) => !isWarm(d));
      assert.deepEqual(sent, want, `deliveries the server sent to the client on node ${i}`);
    }
    await ca.disconnect();
    await cb.disconnect();
  });
}
