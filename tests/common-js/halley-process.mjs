// The part of the Node harnesses (tests/browser/lib/halley.mjs and
// tests/bayeux/lib/harness.mjs) that is about halley itself: the deadline
// every wait has, waiting for a condition, starting the real binary on
// ephemeral ports and reading its listening line, publishing on its ingest
// port, and stopping it (and anything else registered here) by pid.
//
// Only Node's own modules are imported, so both harnesses (each with its own
// node_modules) can import this file by relative path.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** How long any single expected event may take on a loaded 2-core machine. */
export const DEADLINE_MS = 20_000;

/** The binary under test: $HALLEY_BIN, else the debug build `cargo build` leaves. */
export const HALLEY_BIN = process.env.HALLEY_BIN || join(repo, 'target', 'debug', 'halley');

// Pids to SIGKILL if the test process exits before the `after` hooks ran
// (an uncaught error, the runner's timeout). A process started detached (as
// playwright starts Chromium) is killed by process group.
const live = new Map(); // pid -> { group: boolean }
process.on('exit', () => {
  for (const [pid, { group }] of live) {
    try {
      process.kill(group ? -pid : pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** Registers `pid` to be SIGKILLed (its process group with `group`) if the test process exits early. */
export function killOnExit(pid, { group = false } = {}) {
  live.set(pid, { group });
}

/** Undoes `killOnExit` (the process is gone or was stopped). */
export function forget(pid) {
  live.delete(pid);
}

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

/** "host:port" (the host may hold colons, as an IPv6 address does) as `{host, port}`. */
export function hostPort(addr) {
  const colon = addr.lastIndexOf(':');
  return { host: addr.slice(0, colon), port: Number(addr.slice(colon + 1)) };
}

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
  killOnExit(child.pid);
  const log = [];
  let exited = null;
  const exit = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      forget(child.pid);
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
    /** Base URL of the public (subscriber) port. */
    url: `http://${publicAddr}`,
    log,
    /** The last lines of halley's stderr, for failure messages. */
    tail: (n = 30) => log.slice(-n).join('\n'),
    /** Throws if halley exited on its own. */
    assertAlive() {
      if (exited) throw new Error(`halley exited during the test: ${JSON.stringify(exited)}\n${log.join('\n')}`);
    },
    /** Publishes `data` to `channel`; returns halley's `{id, channel, subscribers}`. */
    publish: (channel, data, opts) => publish(ingest, channel, data, opts),
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

/** POST http://INGEST/pub/{channel} (with `?event=` if given); returns `{id, channel, subscribers}`. */
export async function publish(ingest, channel, data, { event } = {}) {
  const query = event ? `?event=${encodeURIComponent(event)}` : '';
  const res = await fetch(`http://${ingest}/pub/${channel}${query}`, {
    method: 'POST',
    body: data,
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
