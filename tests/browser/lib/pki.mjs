// A throwaway CA and a localhost certificate signed by it (openssl), for
// the tests that serve halley over TLS. Chromium trusts the certificate by
// its key (`--ignore-certificate-errors-spki-list`), so the test needs no
// change to the system's trust store.
import { after } from 'node:test';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Makes the CA and the certificate in a fresh directory (removed after the
 * file's tests) and returns halley's TLS flags and the browser's argument.
 */
export function testPki(name) {
  const dir = mkdtempSync(join(tmpdir(), `halley-${name}-browser-`));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const openssl = (args, input) =>
    execFileSync('openssl', args, { cwd: dir, input, stdio: ['pipe', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(['req', '-x509', ...ec, '-days', '2', '-subj', `/CN=halley ${name} test CA`, '-keyout', 'ca.key', '-out', 'ca.pem', '-addext', 'basicConstraints=critical,CA:TRUE']);
  openssl(['req', ...ec, '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr']);
  writeFileSync(join(dir, 'ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'ext', '-out', 'server.pem']);
  // base64(sha256(SubjectPublicKeyInfo)) of the server certificate.
  const spki = openssl(['dgst', '-sha256', '-binary'], openssl(['pkey', '-pubin', '-outform', 'der'], openssl(['x509', '-in', 'server.pem', '-pubkey', '-noout']))).toString('base64');
  return {
    flags: ['--tls-cert', join(dir, 'server.pem'), '--tls-key', join(dir, 'server.key')],
    browserArgs: [`--ignore-certificate-errors-spki-list=${spki}`],
  };
}
