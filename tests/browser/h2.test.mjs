// HTTP/2 in headless Chromium: a page of 20 live EventSources on one https
// origin. Over HTTP/1.1 Chromium holds at most six connections per host, so
// the seventh and later EventSources never open (issue 17 measured 6 of 20);
// halley offers `h2` by ALPN on its TLS port, so all 20 are streams of one
// connection and every one receives its messages. The certificate is made
// here with the openssl CLI and accepted by this profile only, as in
// tls.test.mjs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setup, waitInPage, describe as pageState, DEADLINE_MS } from './lib/halley.mjs';

const N = 20;
const dir = mkdtempSync(join(tmpdir(), 'halley-h2-browser-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function openssl(args, input) {
  return execFileSync('openssl', args, { cwd: dir, input, stdio: ['pipe', 'pipe', 'pipe'] });
}

const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
openssl(['req', '-x509', ...ec, '-days', '2', '-subj', '/CN=halley h2 test CA', '-keyout', 'ca.key', '-out', 'ca.pem', '-addext', 'basicConstraints=critical,CA:TRUE']);
openssl(['req', ...ec, '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr']);
writeFileSync(join(dir, 'ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'ext', '-out', 'server.pem']);
const spki = openssl(['dgst', '-sha256', '-binary'], openssl(['pkey', '-pubin', '-outform', 'der'], openssl(['x509', '-in', 'server.pem', '-pubkey', '-noout']))).toString('base64');

const ctx = setup({
  flags: ['--tls-cert', join(dir, 'server.pem'), '--tls-key', join(dir, 'server.key')],
  browserArgs: [`--ignore-certificate-errors-spki-list=${spki}`],
});

const httpsUrl = () => `https://localhost:${ctx.halley.public.split(':').pop()}`;

async function metric(name) {
  const res = await fetch(`http://${ctx.halley.ingest}/metrics`, { signal: AbortSignal.timeout(DEADLINE_MS) });
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

test(`${N} EventSources on one https origin all open and all receive (HTTP/2)`, { timeout: 120_000 }, async () => {
  await ctx.openReady('many-sse.html', { ch: 'h2w', n: String(N), halley: httpsUrl() }, `${N} EventSources open`);
  const ids = [];
  for (let i = 0; i < N; i++) ids.push((await ctx.halley.publish(`h2w/${i}`, `widget ${i}`)).id);
  await waitInPage(ctx, 'every source got its message', (n) => t.bySource.length === n && t.bySource.every((got) => got.length === 1), N);
  const got = await ctx.page.evaluate(() => t.bySource);
  for (let i = 0; i < N; i++) {
    assert.deepEqual(got[i], [{ id: ids[i], data: `widget ${i}` }], `source ${i}\n${await pageState(ctx)}`);
  }
  const conns = await metric('halley_h2_connections');
  assert.ok(conns >= 1 && conns <= 2, `the ${N} streams share one HTTP/2 connection (${conns} open)`);
  assert.ok((await metric('halley_h2_streams_total')) >= N, 'every EventSource is an HTTP/2 stream');
  ctx.halley.assertAlive();
});
