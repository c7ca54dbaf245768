// halley speaking TLS itself (--tls-cert/--tls-key): EventSource over https
// and a WebSocket over wss in headless Chromium, each receiving a published
// sequence exactly. The certificate is issued by a test CA made here with the
// openssl CLI; this test profile's Chromium accepts exactly that certificate
// (--ignore-certificate-errors-spki-list names its public key), nothing else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, payloads, sequence } from './lib/halley.mjs';
import { testPki } from './lib/pki.mjs';

const pki = testPki('tls');

const ctx = setup({
  flags: pki.flags,
  browserArgs: pki.browserArgs,
});

/** halley's public port as an https URL the certificate names. */
const httpsUrl = () => `https://localhost:${ctx.halley.public.split(':').pop()}`;

test('EventSource over https receives a published sequence exactly', { timeout: 90_000 }, async () => {
  await ctx.openReady('sse.html', { ch: 'tls/sse', halley: httpsUrl() }, 'EventSource open over https');
  const seq = sequence(ctx, 'tls/sse');
  await seq.publish(payloads('https', 30));
  await seq.expect('sequence over https');
  ctx.halley.assertAlive();
});

test('a WebSocket over wss receives a published sequence exactly', { timeout: 90_000 }, async () => {
  await ctx.openReady('ws.html', { ch: 'tls/ws', halley: httpsUrl() }, 'WebSocket open over wss');
  const url = await ctx.page.evaluate(() => subUrl({}).replace(/^http/, 'ws'));
  assert.match(url, /^wss:\/\/localhost:/, 'the page used wss');
  const seq = sequence(ctx, 'tls/ws');
  await seq.publish(payloads('wss', 30));
  await seq.expect('sequence over wss');
  ctx.halley.assertAlive();
});
