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

function subUrl(query) {
  const q = new URLSearchParams(query);
  for (const [k, v] of [...q]) if (v === '' || v === undefined) q.delete(k);
  const s = q.toString();
  return `${HALLEY}/sub/${CH}${s ? '?' + s : ''}`;
}
