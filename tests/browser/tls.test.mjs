// halley speaking TLS itself (--tls-cert/--tls-key): EventSource over https
// and a WebSocket over wss in headless Chromium, each receiving a published
// sequence exactly. The certificate is issued by a test CA made here with the
// openssl CLI; this test profile's Chromium accepts exactly that certificate
// (--ignore-certificate-errors-spki-list names its public key), nothing else.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setup, payloads, sequence } from './lib/halley.mjs';

const dir = mkdtempSync(join(tmpdir(), 'halley-tls-browser-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function openssl(args, input) {
  return execFileSync('openssl', args, { cwd: dir, input, stdio: ['pipe', 'pipe', 'pipe'] });
}

const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
openssl(['req', '-x509', ...ec, '-days', '2', '-subj', '/CN=halley browser test CA', '-keyout', 'ca.key', '-out', 'ca.pem', '-addext', 'basicConstraints=critical,CA:TRUE']);
openssl(['req', ...ec, '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr']);
writeFileSync(join(dir, 'ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'ext', '-out', 'server.pem']);
// base64(sha256(SubjectPublicKeyInfo)) of the server certificate.
const spki = openssl(['dgst', '-sha256', '-binary'], openssl(['pkey', '-pubin', '-outform', 'der'], openssl(['x509', '-in', 'server.pem', '-pubkey', '-noout']))).toString('base64');

const ctx = setup({
  flags: ['--tls-cert', join(dir, 'server.pem'), '--tls-key', join(dir, 'server.key')],
  browserArgs: [`--ignore-certificate-errors-spki-list=${spki}`],
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
