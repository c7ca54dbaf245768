// Shared harness for the Bayeux tests: the real halley binary on ephemeral
// ports, the real CometD JavaScript client (npm `cometd`, adapted to Node by
// `cometd-nodejs-client`), a `<script>` stand-in for its callback-polling
// transport, and a plain-HTTP SSE subscriber.
//
// Every wait has a deadline and fails saying what it saw; nothing sleeps in
// place of a condition. Everything started here is stopped in the file's
// `after` hook (halley by its pid), and halley is SIGKILLed by pid if the
// test process exits early.

import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { after } from 'node:test';
import { adapt } from 'cometd-nodejs-client';
import { CometD, LongPollingTransport, CallbackPollingTransport, WebSocketTransport } from 'cometd';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..', '..');

/** How long any single expected event may take on a loaded 2-core machine. */
export const DEADLINE_MS = 20_000;

/** The binary under test: $HALLEY_BIN, else the debug build `cargo build` leaves. */
export const HALLEY_BIN = process.env.HALLEY_BIN || join(repo, 'target', 'debug', 'halley');

// Pids to SIGKILL if the test process exits before the `after` hooks ran.
const live = new Set();
process.on('exit', () => {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** Resolves with `promise`, or rejects saying `what` did not happen in `ms`. */
export async function withDeadline(promise, what, ms = DEADLINE_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` (sync or async) until it returns a truthy value; returns it. */
export async function until(check, what, ms = DEADLINE_MS) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(`${what}: not true within ${ms} ms${last ? ` (last error: ${last.message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

// --- halley ---------------------------------------------------------------

/**
 * Starts halley on ephemeral ports (plus `extra` flags) and waits for its
 * `listening public=ADDR ingest=ADDR ...` line.
 */
export async function startHalley(extra = []) {
  if (!existsSync(HALLEY_BIN)) {
    throw new Error(`${HALLEY_BIN} is missing: run \`cargo build\` first (or set HALLEY_BIN)`);
  }
  const args = ['--listen', '127.0.0.1:0', '--ingest', '127.0.0.1:0', '--resp', '127.0.0.1:0', ...extra];
  const child = spawn(HALLEY_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(child.pid);
  const log = [];
  let exited = null;
  const exit = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      live.delete(child.pid);
      resolve(exited);
    });
  });
  const listening = new Promise((resolve, reject) => {
    child.on('error', reject);
    createInterface({ input: child.stderr }).on('line', (line) => {
      log.push(line);
      if (line.includes('listening public=')) resolve(line);
    });
    exit.then((how) => reject(new Error(`halley exited before listening: ${JSON.stringify(how)}`)));
  });
  let line;
  try {
    line = await withDeadline(listening, 'halley printing its listening line');
  } catch (e) {
    process.kill(child.pid, 'SIGKILL');
    throw new Error(`${e.message}\nhalley stderr:\n${log.join('\n')}`);
  }
  const field = (name) => {
    const m = line.match(new RegExp(`${name}=(\\S+)`));
    if (!m) throw new Error(`no ${name}= in: ${line}`);
    return m[1];
  };
  const publicAddr = field('public');
  const ingest = field('ingest');
  return {
    pid: child.pid,
    public: publicAddr,
    ingest,
    /** The Bayeux endpoint, as a CometD client is configured with it. */
    bayeuxUrl: `http://${publicAddr}/bayeux`,
    log,
    tail: (n = 30) => log.slice(-n).join('\n'),
    /** Throws if halley exited on its own. */
    assertAlive() {
      if (exited) throw new Error(`halley exited during the test: ${JSON.stringify(exited)}\n${log.join('\n')}`);
    },
    /** POST http://INGEST/pub/{channel} with `body`; returns `{id, channel, subscribers}`. */
    publish: (channel, body) => publish(ingest, channel, body),
    /** SIGTERM, then SIGKILL (by pid) if it has not exited within 10 s. */
    async stop() {
      if (exited) return exited;
      process.kill(child.pid, 'SIGTERM');
      try {
        return await withDeadline(exit, 'halley exiting on SIGTERM', 10_000);
      } catch {
        process.kill(child.pid, 'SIGKILL');
        return withDeadline(exit, 'halley exiting on SIGKILL');
      }
    },
  };
}

/** POST http://INGEST/pub/{channel}; returns halley's `{id, channel, subscribers}`. */
export async function publish(ingest, channel, body) {
  const res = await fetch(`http://${ingest}/pub/${channel}`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'text/plain; charset=utf-8' },
    signal: AbortSignal.timeout(DEADLINE_MS),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`publish to ${channel}: ${res.status} ${text}`);
  const answer = JSON.parse(text);
  if (typeof answer.id !== 'string' || answer.channel !== channel) {
    throw new Error(`publish to ${channel}: unexpected answer ${text}`);
  }
  return answer;
}

/** POST raw Bayeux JSON to /bayeux (for checks the CometD client cannot make). */
export async function rawBayeux(halley, messages) {
  const res = await fetch(halley.bayeuxUrl, {
    method: 'POST',
    body: JSON.stringify(messages),
    headers: { 'content-type': 'application/json' },
    signal: AbortSignal.timeout(DEADLINE_MS),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST /bayeux ${JSON.stringify(messages)}: ${res.status} ${text}`);
  return JSON.parse(text);
}

// --- the <script> stand-in for callback-polling ---------------------------

/**
 * What a browser does with the `<script>` elements CometD's callback-polling
 * transport appends to `<head>`: fetch `src`, evaluate the JavaScript it
 * returns in the global scope (where the transport put its
 * `window._cometd_jsonp_N` callback), and fire `onerror` when the load fails.
 * `scripts.loads` records every load (URL, status, content type, body) for
 * assertions; `scripts.problems` collects what a browser would show as
 * errors (a script that throws, a callback name already in flight).
 */
export const scripts = { loads: [], problems: [], inflight: new Map() };

function loadScript(script) {
  const url = new URL(script.src);
  const name = url.searchParams.get('jsonp');
  if (scripts.inflight.has(name)) {
    // Two CometD clients in one process share `window` and both number
    // their callbacks from 0: the tests must run one callback-polling
    // client at a time, as each page of a browser has its own window.
    scripts.problems.push(`two scripts in flight with the callback ${name}`);
  }
  const controller = new AbortController();
  scripts.inflight.set(name, controller);
  const record = { url: script.src, callback: name, status: 0, type: '', body: '' };
  scripts.loads.push(record);
  const fail = (why) => {
    record.error = why;
    if (typeof script.onerror === 'function') script.onerror({ type: 'error', message: why });
  };
  (async () => {
    let res;
    try {
      res = await fetch(script.src, { signal: controller.signal });
      record.status = res.status;
      record.type = res.headers.get('content-type') || '';
      record.body = await res.text();
    } catch (e) {
      if (!controller.signal.aborted) fail(`fetch failed: ${e.message}`);
      return;
    } finally {
      scripts.inflight.delete(name);
    }
    if (res.status !== 200) {
      fail(`HTTP ${res.status}`);
      return;
    }
    // Evaluate as a browser would: in the page's realm (so the objects it
    // makes are ordinary objects here), with the page's `window` as the
    // global scope that the callback name is looked up in.
    try {
      new Function('window', `with (window) {\n${record.body}\n}`)(window);
    } catch (e) {
      scripts.problems.push(`script ${script.src} threw: ${e.message}`);
      return;
    }
    if (typeof script.onload === 'function') script.onload({ type: 'load' });
  })();
}

function installScriptStandIn() {
  const head = {
    children: [],
    appendChild(el) {
      this.children.push(el);
      if (el.tagName === 'SCRIPT') loadScript(el);
      return el;
    },
    removeChild(el) {
      const i = this.children.indexOf(el);
      if (i < 0) throw new Error('removeChild: not a child of <head>');
      this.children.splice(i, 1);
      return el;
    },
  };
  window.document = {
    head,
    getElementsByTagName: (tag) => (tag.toLowerCase() === 'head' ? [head] : []),
    createElement(tag) {
      return { tagName: tag.toUpperCase(), src: '', type: '', async: true, onerror: null, onload: null };
    },
  };
}

/** Aborts every script still loading (a page closing). */
export function abortScripts() {
  for (const controller of scripts.inflight.values()) controller.abort();
  scripts.inflight.clear();
}

adapt();
installScriptStandIn();

// --- CometD clients ---------------------------------------------------------

const TRANSPORTS = {
  'long-polling': () => new LongPollingTransport(),
  'callback-polling': () => new CallbackPollingTransport(),
  websocket: () => new WebSocketTransport(),
};

/**
 * A CometD client that uses only `transport`, with promise-returning
 * wrappers (each with the deadline) around the calls the tests make. Every
 * message the server sends it passes an incoming extension and is kept in
 * `client.incoming` (meta replies, publish acknowledgements and deliveries,
 * in arrival order), so a test can check what the server sent, not only what
 * the client passed on to listeners.
 */
export function makeClient(halley, transport) {
  const cometd = new CometD(`test-${transport}-${Math.random().toString(36).slice(2, 8)}`);
  cometd.unregisterTransports();
  if (!cometd.registerTransport(transport, TRANSPORTS[transport]())) {
    throw new Error(`could not register the ${transport} transport`);
  }
  cometd.configure({ url: halley.bayeuxUrl, logLevel: 'warn' });
  const incoming = [];
  const outgoing = [];
  cometd.registerExtension('recorder', {
    incoming(message) {
      incoming.push(structuredClone(message));
      return message;
    },
    outgoing(message) {
      outgoing.push(structuredClone(message));
      return message;
    },
  });
  const connected = [];
  cometd.addListener('/meta/connect', (m) => connected.push(m));
  const client = {
    cometd,
    incoming,
    outgoing,
    connected,
    /** Deliveries (not replies) the server sent, optionally of one channel. */
    deliveries(channel) {
      return incoming.filter((m) => !m.channel.startsWith('/meta/') && 'data' in m && !('successful' in m) && (!channel || m.channel === channel));
    },
    describe() {
      return [
        `status ${cometd.getStatus()}, transport ${cometd.getTransport()?.type}`,
        `last incoming: ${JSON.stringify(incoming.slice(-8))}`,
        `script problems: ${JSON.stringify(scripts.problems)}`,
        `halley stderr:\n${halley.tail(10)}`,
      ].join('\n');
    },
    handshake(props) {
      return withDeadline(
        new Promise((resolve) => (props ? cometd.handshake(props, resolve) : cometd.handshake(resolve))),
        `${transport} handshake`,
      );
    },
    /** Subscribes; resolves with the subscribe reply and the handle. */
    async subscribe(channel, onMessage) {
      let handle;
      const reply = await withDeadline(
        new Promise((resolve) => {
          handle = cometd.subscribe(channel, onMessage, resolve);
        }),
        `${transport} subscribe ${channel}`,
      );
      return { reply, handle };
    },
    unsubscribe(handle) {
      return withDeadline(new Promise((resolve) => cometd.unsubscribe(handle, resolve)), `${transport} unsubscribe ${handle.channel}`);
    },
    /** Publishes; resolves with the publish callback's reply. */
    publish(channel, data) {
      return withDeadline(new Promise((resolve) => cometd.publish(channel, data, resolve)), `${transport} publish to ${channel}`);
    },
    disconnect() {
      return withDeadline(new Promise((resolve) => cometd.disconnect(resolve)), `${transport} disconnect`);
    },
    /** Disconnects if still connected, and stops whatever is left (scripts, sockets). */
    async close() {
      if (!cometd.isDisconnected()) {
        try {
          await client.disconnect();
        } catch {
          // aborted below
        }
      }
      await until(() => cometd.getStatus() === 'disconnected', `${transport} client reaching "disconnected"`, 10_000).catch(() => {
        cometd.getTransport()?.abort();
      });
      if (transport === 'callback-polling') {
        await until(() => scripts.inflight.size === 0, 'callback-polling scripts finishing', 10_000).catch(abortScripts);
      }
    },
  };
  return client;
}

/**
 * Registers `after` for a test file: stops the clients made by
 * `track(client)` and then halley. Returns `{track}`.
 */
export function cleanup(getHalley) {
  const clients = [];
  after(async () => {
    for (const c of clients) {
      try {
        await withDeadline(c.close(), 'closing a CometD client', 15_000);
      } catch {
        // halley is stopped below either way
      }
    }
    abortScripts();
    const halley = getHalley();
    try {
      halley?.assertAlive();
    } finally {
      await halley?.stop();
    }
  });
  return {
    track(c) {
      clients.push(c);
      return c;
    },
  };
}

// --- SSE --------------------------------------------------------------------

/**
 * A plain HTTP SSE subscriber: GET /sub/{channels} with
 * `Accept: text/event-stream`. Resolves once the response head arrived
 * (halley sends it once the subscription is registered). `events` collects
 * `{id, event, data}` as they come; `next(n)` waits for the n-th.
 */
export function sseSubscribe(halley, channels) {
  return withDeadline(
    new Promise((resolve, reject) => {
      const req = httpRequest(
        { host: halley.public.split(':')[0], port: Number(halley.public.split(':')[1]), path: `/sub/${channels}`, headers: { accept: 'text/event-stream' } },
        (res) => {
          if (res.statusCode !== 200) {
            reject(new Error(`SSE /sub/${channels}: HTTP ${res.statusCode}`));
            res.destroy();
            return;
          }
          res.setEncoding('utf8');
          const events = [];
          let buffer = '';
          let ended = false;
          res.on('data', (chunk) => {
            buffer += chunk.replace(/\r\n?/g, '\n');
            let end;
            while ((end = buffer.indexOf('\n\n')) >= 0) {
              const block = buffer.slice(0, end);
              buffer = buffer.slice(end + 2);
              const ev = { id: null, event: null, data: [] };
              for (const line of block.split('\n')) {
                const colon = line.indexOf(':');
                if (colon === 0) continue; // a comment (heartbeat)
                const field = colon < 0 ? line : line.slice(0, colon);
                let value = colon < 0 ? '' : line.slice(colon + 1);
                if (value.startsWith(' ')) value = value.slice(1);
                if (field === 'data') ev.data.push(value);
                else if (field === 'id') ev.id = value;
                else if (field === 'event') ev.event = value;
              }
              if (ev.data.length) events.push({ id: ev.id, event: ev.event, data: ev.data.join('\n') });
            }
          });
          res.on('close', () => {
            ended = true;
          });
          resolve({
            events,
            contentType: res.headers['content-type'],
            next: (n) => until(() => events.length >= n || ended, `SSE event #${n} on ${channels}`).then(() => {
              if (events.length < n) throw new Error(`SSE stream on ${channels} ended after ${events.length} events`);
              return events[n - 1];
            }),
            close: () => {
              req.destroy();
              res.destroy();
            },
          });
        },
      );
      req.on('error', reject);
      req.end();
    }),
    `SSE subscribe ${channels}`,
  );
}
