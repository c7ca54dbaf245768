// Shared by every test page. The test opens a page as
//   /NAME.html?halley=http://127.0.0.1:PORT&ch=CHANNEL[&...]
// and reads what the page saw from `window.t`.
'use strict';
const params = new URLSearchParams(location.search);
const HALLEY = params.get('halley');
const CH = params.get('ch') || 'ch';

window.t = {
  received: [], // {id, data, event?} in arrival order
  opens: 0, // responses (or EventSource opens) that started
  failures: [], // transport errors the page saw and recovered from
  ready: false, // the page is subscribed (tests publish only after this)
};

function record(id, data, event) {
  const m = { id, data };
  if (event) m.event = event;
  t.received.push(m);
}

function lastId() {
  return t.received.length ? t.received[t.received.length - 1].id : '';
}

/** HALLEY/sub/{channels} with `query`, leaving out empty values. */
function subUrl(query, channels = CH) {
  const q = new URLSearchParams(query);
  for (const [k, v] of [...q]) if (v === '' || v === undefined) q.delete(k);
  const s = q.toString();
  return `${HALLEY}/sub/${channels}${s ? '?' + s : ''}`;
}

/** Counts a connection (a response or a socket) that started: the page is subscribed. */
function opened() {
  t.opens++;
  t.ready = true;
}

/**
 * GET `url` with XMLHttpRequest (60 s timeout); resolves with `read(xhr)`
 * for a 200, rejects for any other status, a network error, a timeout, or
 * when `read` throws.
 */
function xhrGet(url, read) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('GET', url);
    xhr.timeout = 60000;
    xhr.onload = () => {
      if (xhr.status !== 200) return reject(new Error(`status ${xhr.status}: ${xhr.responseText}`));
      try {
        resolve(read(xhr));
      } catch (e) {
        reject(e);
      }
    };
    xhr.onerror = () => reject(new Error('network error'));
    xhr.ontimeout = () => reject(new Error('xhr timeout'));
    xhr.send();
  });
}

/**
 * The long-poll loop of longpoll.html and jsonp.html. `poll(query)` makes
 * one request with `query` (timeout, last_id) and resolves with `{body,
 * ...more}`. Without a ?last_id= page parameter it first asks with
 * timeout=0 for the current position; then every poll carries the last_id
 * of the previous answer (with the page's ?timeout=, default 2), so nothing
 * published between polls is lost. Each answer is recorded in `t.polls` as
 * `{n: messages, ...more, gapBody}`; a failed poll in `t.failures`, after
 * which the loop backs off for 500 ms, as a client would.
 */
async function pollLoop(poll) {
  const timeout = params.get('timeout') || '2';
  let position = params.get('last_id');
  if (!position) position = (await poll({ timeout: '0' })).body.last_id;
  t.ready = true;
  for (;;) {
    try {
      const { body, ...more } = await poll({ timeout, last_id: position });
      t.opens++;
      t.polls.push({ n: body.messages.length, ...more, gapBody: body.gap === true });
      for (const m of body.messages) record(m.id, m.data, m.event);
      position = body.last_id;
    } catch (e) {
      t.failures.push(String(e));
      await new Promise((r) => setTimeout(r, 500)); // the client's back-off
    }
  }
}

/**
 * A hidden <iframe>, added once the page has loaded; `point(src)` (pointing
 * it at `src`, kept in `t.frames`) is called first with `first()`.
 * Returns `point`.
 */
function hiddenFrame(first) {
  t.frames = []; // every src the iframe was pointed at
  let frame = null;
  const point = (src) => {
    t.frames.push(src);
    frame.src = src;
  };
  window.addEventListener('load', () => {
    frame = document.createElement('iframe');
    frame.style.display = 'none';
    document.body.appendChild(frame);
    point(first());
  });
  return point;
}

/**
 * One event of a Pushlet client, as a {field: value} object: the
 * join-listen-ack sets t.id, t.ack and t.ready; a data event is recorded as
 * {id: p_mid, data: msg}; any other p_event goes to `more[p_event]`, and
 * one not there is a failure.
 */
function pushletEvent(e, more) {
  if (e.p_event === 'join-listen-ack') {
    t.id = e.p_id;
    t.ack = e;
    t.ready = true;
  } else if (e.p_event === 'data') {
    record(e.p_mid, e.msg);
  } else if (Object.hasOwn(more, e.p_event)) {
    more[e.p_event](e);
  } else {
    t.failures.push(`unexpected event ${JSON.stringify(e)}`);
  }
}
