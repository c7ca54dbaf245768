// Shared harness for the browser tests: the real halley binary on ephemeral
// ports, a small HTTP server for the test pages (a different origin from
// halley, as on a real site), headless Chromium through playwright-core, and
// a TCP proxy that can cut a browser's connections on demand.
//
// Every wait has a deadline and fails saying what it saw; nothing sleeps in
// place of a condition. Everything started here is killed by its pid in the
// file's `after` hook, and again (synchronously) if the process exits early.

import { createServer, request as httpRequest } from 'node:http';
import { createServer as createTcpServer, connect as tcpConnect } from 'node:net';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, extname, normalize } from 'node:path';
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';
import { DEADLINE_MS, withDeadline, startHalley, hostPort, killOnExit, forget } from '../../common-js/halley-process.mjs';

// Starting, publishing to and stopping halley, the deadline and the waits
// are shared with the Bayeux harness (tests/common-js/halley-process.mjs).
export { DEADLINE_MS, HALLEY_BIN, withDeadline, until, startHalley, publish } from '../../common-js/halley-process.mjs';

const pagesDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'pages');

/** Chromium: $CHROMIUM, else Debian's launcher. */
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// --- halley ---------------------------------------------------------------

/** Publishes each payload in turn (so ids are in publish order); returns their ids. */
export async function publishAll(halley, channel, payloads) {
  const ids = [];
  for (const p of payloads) {
    const { data, event } = typeof p === 'string' ? { data: p } : p;
    ids.push((await halley.publish(channel, data, { event })).id);
  }
  return ids;
}

/**
 * `n` payloads that exercise encodings: plain text, non-ASCII, JSON-looking
 * text, quotes and backslashes, U+2028/U+2029 (not valid in JS string
 * literals before ES2019, a classic JSONP bug), `</script>`, embedded,
 * leading and trailing newlines, a leading space (SSE strips one after
 * `data:`), and the empty payload.
 */
export function payloads(prefix, n) {
  const shapes = [
    (i) => `${prefix} ${i}`,
    (i) => `${prefix} ${i} héllo ✓ 日本 🚀`,
    (i) => `{"${prefix}":${i},"nested":{"a":[1,2,3]}}`,
    (i) => `${prefix} ${i} "quoted" back\\slash \u2028 \u2029 tab\t`,
    (i) => `${prefix} ${i} </script><script>alert(1)</script>`,
    (i) => `${prefix} ${i} line one\nline two\n\nline four`,
    () => '',
    (i) => `\n ${prefix} ${i} after a newline and a space, before a newline\n`,
  ];
  return Array.from({ length: n }, (_, i) => shapes[i % shapes.length](i));
}

// --- pages ------------------------------------------------------------------

const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
};

/**
 * Serves tests/browser/pages/ on 127.0.0.1:0. Returns `{origin, close}`.
 *
 * With `subUpstream` (a function returning halley's public "host:port"),
 * requests for /sub/... and for the Pushlet endpoint (/pushlet,
 * /pushlet/pushlet.srv) are forwarded there and the answers streamed back as
 * they come, as a site's reverse proxy would: the page and halley then share
 * an origin (which the forever iframe and Pushlet's hidden iframe need; see
 * iframe.test.mjs and pushlet.test.mjs).
 */
export async function servePages({ subUpstream } = {}) {
  const sockets = new Set(); // upstream sockets of proxied requests
  const server = createServer(async (req, res) => {
    if (subUpstream && (req.url.startsWith('/sub/') || /^\/pushlet(\/|\?|$)/.test(req.url))) {
      proxySub(req, res, subUpstream());
      return;
    }
    const path = normalize(new URL(req.url, 'http://x').pathname).replace(/^([/\\])+/, '');
    const type = types[extname(path)];
    if (!type || path.startsWith('..')) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(join(pagesDir, path));
      res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };

  function proxySub(req, res, upstream) {
    const { host, port } = hostPort(upstream);
    const headers = { ...req.headers, host: upstream, connection: 'close' };
    const up = httpRequest({ host, port, method: req.method, path: req.url, headers }, (upRes) => {
      // Hop-by-hop framing is Node's to redo; everything else passes as is.
      const { connection, 'transfer-encoding': te, 'keep-alive': ka, ...rest } = upRes.headers;
      res.writeHead(upRes.statusCode, rest);
      res.flushHeaders();
      upRes.pipe(res);
      upRes.on('error', () => res.destroy());
    });
    up.on('socket', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  }
}

// --- a proxy that cuts connections ----------------------------------------

/**
 * A TCP proxy on 127.0.0.1:0 in front of `target` ("host:port"). `cutAll()`
 * destroys every open connection (as a network failure or a restarting
 * load balancer would). While `hold()` is on, new connections are accepted
 * and read but not forwarded until `release()`. `heads` collects the request
 * heads seen, in order (so a test can check what a reconnect asked for).
 */
export async function startCutProxy(target) {
  const { host, port } = hostPort(target);
  const open = new Set();
  const held = [];
  const heads = [];
  let holding = false;

  const forward = (client, buffered) => {
    const upstream = tcpConnect(port, host);
    const pair = { client, upstream };
    open.add(pair);
    const drop = () => {
      open.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', drop).on('close', drop);
    client.on('error', drop).on('close', drop);
    for (const chunk of buffered) upstream.write(chunk);
    client.pipe(upstream);
    upstream.pipe(client);
  };

  const server = createTcpServer((client) => {
    const buffered = [];
    // Every request head on the connection (keep-alive reuses them). Only
    // for bodiless requests (GET, OPTIONS), which is all subscribers send.
    let seen = '';
    const sniff = (chunk) => {
      seen += chunk.toString('latin1');
      let end;
      while ((end = seen.indexOf('\r\n\r\n')) >= 0) {
        heads.push(seen.slice(0, end));
        seen = seen.slice(end + 4);
      }
    };
    client.on('data', sniff);
    if (holding) {
      const onData = (chunk) => buffered.push(chunk);
      client.on('data', onData);
      const entry = { client, buffered, onData };
      held.push(entry);
      client.on('error', () => {});
      client.on('close', () => {
        const i = held.indexOf(entry);
        if (i >= 0) held.splice(i, 1);
      });
    } else {
      forward(client, []);
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    heads,
    /** How many connections are held, unforwarded. */
    heldCount: () => held.length,
    /** How many connections are being forwarded. */
    openCount: () => open.size,
    hold() {
      holding = true;
    },
    release() {
      holding = false;
      for (const { client, buffered, onData } of held.splice(0)) {
        client.pause();
        client.off('data', onData);
        forward(client, buffered);
        client.resume();
      }
    },
    cutAll() {
      for (const { client, upstream } of open) {
        client.destroy();
        upstream.destroy();
      }
      open.clear();
    },
    close() {
      this.cutAll();
      for (const { client } of held.splice(0)) client.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

// --- the browser ----------------------------------------------------------

/**
 * Launches headless Chromium (a fresh temporary profile) and returns
 * `{browser, pid, close}`. It is started as a browser server so its pid is
 * known and can be killed even if the protocol connection hangs.
 */
export async function launchBrowser(extraArgs = []) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (tests/run does)`);
  // Playwright's own timeout (which kills what it started) fires first; ours
  // is the backstop.
  const server = await withDeadline(
    chromium.launchServer({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...extraArgs], headless: true, timeout: DEADLINE_MS }),
    'chromium starting',
    DEADLINE_MS + 10_000,
  );
  const pid = server.process().pid;
  killOnExit(pid, { group: true });
  server.process().on('exit', () => forget(pid));
  let browser;
  try {
    browser = await withDeadline(chromium.connect(server.wsEndpoint(), { timeout: DEADLINE_MS }), 'connecting to chromium', DEADLINE_MS + 10_000);
  } catch (e) {
    await server.kill();
    throw e;
  }
  return {
    browser,
    pid,
    async close() {
      try {
        await withDeadline(browser.close(), 'closing the browser connection', 10_000);
        await withDeadline(server.close(), 'closing chromium', 10_000);
      } catch {
        // fall through to the kill
      }
      await server.kill(); // the whole process group, by pid; a no-op once it exited
      forget(pid);
    },
  };
}

/**
 * Opens `url` in a new page and records its console errors and uncaught
 * exceptions in `page.problems` (shown when a wait fails).
 */
export async function openPage(browser, url) {
  const page = await browser.newPage();
  page.problems = [];
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    const at = m.location()?.url;
    page.problems.push(`console.${m.type()}: ${m.text()}${at ? ` (at ${at})` : ''}`);
  });
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) page.problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  page.on('requestfailed', (r) => page.problems.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(url, { timeout: DEADLINE_MS, waitUntil: 'load' });
  return page;
}

/**
 * Waits until `fn(arg)` is truthy in the page (`page.waitForFunction` with
 * the deadline). On timeout, fails with the page's recorded state
 * (`window.t`), its problems and halley's last log lines.
 */
export async function waitInPage(ctx, what, fn, arg) {
  try {
    const handle = await ctx.page.waitForFunction(fn, arg, { timeout: DEADLINE_MS, polling: 50 });
    return handle.jsonValue();
  } catch (e) {
    throw new Error(`${what}: ${e.message.split('\n')[0]}\n${await describe(ctx)}`);
  }
}

/** The page's state, its problems and halley's log tail, for failure messages. */
export async function describe(ctx) {
  let state;
  try {
    state = JSON.stringify(await ctx.page.evaluate(() => window.t), null, 1).slice(0, 6000);
  } catch (e) {
    state = `(could not read window.t: ${e.message})`;
  }
  return [
    `page state: ${state}`,
    `page problems:\n  ${ctx.page.problems.join('\n  ') || '(none)'}`,
    `halley stderr (last lines):\n${ctx.halley.tail()}`,
  ].join('\n');
}

/**
 * Registers `before`/`after` hooks for one test file: its own halley (with
 * `flags`: an array, or a function of the context called once `ctx.pages`
 * exists, for flags naming the page origin), page server (which also
 * forwards /sub/ and /pushlet to halley, so `ctx.pages.origin` can stand in
 * for halley's URL on the page's own origin) and browser. Returns a context whose fields
 * are filled in by `before`: `halley`, `pages`, `browser`, and `page` (set by
 * `ctx.open(name, params)`). `browserArgs` are extra Chromium flags.
 */
export function setup({ flags = [], browserArgs = [] } = {}) {
  const ctx = {
    halley: null,
    pages: null,
    chromium: null,
    browser: null,
    page: null,
    extras: [],
    /** Opens pages/{name} with the query `params` (halley's URL added as `halley`). */
    async open(name, params = {}) {
      if (ctx.page) await ctx.page.close().catch(() => {});
      const query = new URLSearchParams({ halley: ctx.halley.url, ...params });
      ctx.page = await openPage(ctx.browser, `${ctx.pages.origin}/${name}?${query}`);
      return ctx.page;
    },
    /**
     * Opens pages/{name} served from `origin` as an extra page (ctx.page
     * stays); `params` as for `open`. Closed with the browser.
     */
    async openAt(origin, name, params = {}) {
      const query = new URLSearchParams({ halley: ctx.halley.url, ...params });
      return openPage(ctx.browser, `${origin}/${name}?${query}`);
    },
    /**
     * Another halley (with `flags`) and a page server forwarding /sub/ to it,
     * both stopped in `after`. Returns `{halley, pages}`.
     */
    async another(flags = []) {
      const halley = await startHalley(flags);
      ctx.extras.push({ close: () => halley.stop() });
      const pages = await servePages({ subUpstream: () => halley.public });
      ctx.extras.push(pages);
      return { halley, pages };
    },
    /** `open`, then waits (saying `what`) until the page sets `t.ready`. */
    async openReady(name, params, what) {
      await ctx.open(name, params);
      await waitInPage(ctx, what, () => window.t.ready);
      return ctx.page;
    },
    /** A `startCutProxy` in front of halley's public port, closed in `after`. */
    async cutProxy() {
      const proxy = await startCutProxy(ctx.halley.public);
      ctx.extras.push(proxy);
      return proxy;
    },
  };
  before(async () => {
    // The pages first, so `flags` can name their origin.
    ctx.pages = await servePages({ subUpstream: () => ctx.halley.public });
    ctx.halley = await startHalley(typeof flags === 'function' ? flags(ctx) : flags);
    ctx.chromium = await launchBrowser(browserArgs);
    ctx.browser = ctx.chromium.browser;
  });
  after(async () => {
    const alive = ctx.halley && (() => ctx.halley.assertAlive());
    const steps = [
      () => ctx.page?.close(),
      () => ctx.chromium?.close(),
      ...ctx.extras.map((x) => () => x.close()),
      () => ctx.pages?.close(),
    ];
    for (const step of steps) {
      try {
        await withDeadline(Promise.resolve(step()), 'cleanup step', 15_000);
      } catch {
        // keep cleaning up; the kills below are by pid
      }
    }
    try {
      alive?.();
    } finally {
      await ctx.halley?.stop();
    }
  });
  return ctx;
}

/**
 * The assertion every test ends with: `got` (what the page received, as
 * `{id, data}`) is exactly `ids`/`datas` in order: nothing missing, nothing
 * repeated, nothing reordered. The message names the first difference.
 */
export function assertExactSequence(got, ids, datas, label) {
  const seen = new Map();
  for (const [i, m] of got.entries()) {
    if (seen.has(m.id)) throw new Error(`${label}: duplicate of ${m.id} at positions ${seen.get(m.id)} and ${i}`);
    seen.set(m.id, i);
  }
  const missing = ids.filter((id) => !seen.has(id));
  if (missing.length) throw new Error(`${label}: missing ${missing.length} of ${ids.length}: ${missing.join(' ')}`);
  if (got.length !== ids.length) {
    throw new Error(`${label}: received ${got.length} messages, published ${ids.length}: extra ${got.filter((m) => !ids.includes(m.id)).map((m) => m.id).join(' ')}`);
  }
  for (let i = 0; i < ids.length; i++) {
    if (got[i].id !== ids[i]) throw new Error(`${label}: position ${i} has ${got[i].id}, expected ${ids[i]} (out of order)`);
    if (got[i].data !== datas[i]) {
      throw new Error(`${label}: message ${ids[i]} data ${JSON.stringify(got[i].data)}, published ${JSON.stringify(datas[i])}`);
    }
  }
}

/**
 * Waits until the page has received as many messages as `ids`, then asserts
 * they are exactly `ids`/`datas` in order. If they do not all come in time,
 * fails naming what is missing or wrong, with the page's state.
 */
export async function waitForSequence(ctx, ids, datas, label) {
  const read = () => ctx.page.evaluate(() => window.t.received);
  try {
    await ctx.page.waitForFunction((n) => window.t.received.length >= n, ids.length, { timeout: DEADLINE_MS, polling: 50 });
  } catch (e) {
    const got = await read().catch(() => []);
    let diff = `received ${got.length} of ${ids.length}`;
    try {
      assertExactSequence(got, ids, datas, label);
    } catch (d) {
      diff = d.message;
    }
    throw new Error(`${label}: not all ${ids.length} messages within ${DEADLINE_MS} ms: ${diff}\n${await describe(ctx)}`);
  }
  const got = await read();
  assertExactSequence(got, ids, datas, label);
  return got;
}

/**
 * What a page (`view`: `{page, halley}`, as `ctx` is) must end up with on
 * `channel`: every message published through this, in publish order.
 * `publish(list)` publishes the payloads (strings, or `{data, event}`) one
 * after another and returns their ids; `oneByOne(list)` waits for each in
 * the page before publishing the next; `expect(label)` is `waitForSequence`
 * for all so far. `body(data)` is what is published for `data` (the page
 * must receive `data`).
 */
export function sequence(view, channel, { body = (data) => data } = {}) {
  const seq = {
    ids: [],
    datas: [],
    async publish(list) {
      const items = list.map((p) => (typeof p === 'string' ? { data: p } : p));
      const ids = await publishAll(view.halley, channel, items.map((p) => ({ ...p, data: body(p.data) })));
      seq.ids.push(...ids);
      seq.datas.push(...items.map((p) => p.data));
      return ids;
    },
    async oneByOne(list) {
      for (const p of list) {
        await seq.publish([p]);
        await waitInPage(view, `message ${seq.ids.length}`, (n) => window.t.received.length >= n, seq.ids.length);
      }
    },
    expect(label) {
      return waitForSequence(view, seq.ids, seq.datas, label);
    },
  };
  return seq;
}

/**
 * The page-driven resume of the streaming pages (sse.html, stream.html,
 * ws.html): the page closes its connection (`closeIt()`), ten messages are
 * published while it has none, it opens a new one resuming from the last id
 * it saw (`reopen(reopenArg)`) and says so (`what`), ten more are published;
 * then it must have all of `seq`, exactly.
 */
export async function resumeAfterClose(ctx, seq, what, reopenArg) {
  await ctx.page.evaluate(() => closeIt());
  await seq.publish(payloads('while-closed', 10));
  await ctx.page.evaluate((arg) => reopen(arg), reopenArg);
  await waitInPage(ctx, what, () => window.t.ready && window.t.opens >= 2);
  await seq.publish(payloads('after-reopen', 10));
  return seq.expect('across the resume');
}

/** Waits until a poll of longpoll.html or jsonp.html started after now has timed out empty. */
export async function waitForEmptyPoll(ctx) {
  const polls = await ctx.page.evaluate(() => t.polls.length);
  await waitInPage(ctx, 'a poll timing out empty', (n) => window.t.polls.slice(n).some((p) => p.n === 0), polls);
}
