// Shared harness for the Bayeux tests: the real halley binary on ephemeral
// ports, the real CometD JavaScript client (npm `cometd`, adapted to Node by
// `cometd-nodejs-client`), a `<script>` stand-in for its callback-polling
// transport, and a plain-HTTP SSE subscriber.
//
// Every wait has a deadline and fails saying what it saw; nothing sleeps in
// place of a condition. Everything started here is stopped in the file's
// `after` hook (halley by its pid), and halley is SIGKILLed by pid if the
// test process exits early.

import { request as httpRequest } from 'node:http';
import { after } from 'node:test';
import { adapt } from 'cometd-nodejs-client';
import { CometD, LongPollingTransport, CallbackPollingTransport, WebSocketTransport } from 'cometd';
import { DEADLINE_MS, withDeadline, until, startHalley as startHalleyProcess, hostPort } from '../../common-js/halley-process.mjs';

// The deadline, the waits, and publishing to halley are shared with the
// browser harness (tests/common-js/halley-process.mjs).
export { DEADLINE_MS, HALLEY_BIN, withDeadline, until, publish } from '../../common-js/halley-process.mjs';

// --- halley ---------------------------------------------------------------

/**
 * Starts halley on ephemeral ports (plus `extra` flags) and waits for its
 * `listening public=ADDR ingest=ADDR ...` line; the answer also has
 * `bayeuxUrl`, the Bayeux endpoint as a CometD client is configured with it.
 */
export async function startHalley(extra = []) {
  const halley = await startHalleyProcess(extra);
  return { ...halley, bayeuxUrl: `${halley.url}/bayeux` };
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
        { ...hostPort(halley.public), path: `/sub/${channels}`, headers: { accept: 'text/event-stream' } },
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
