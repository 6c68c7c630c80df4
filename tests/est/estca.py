#!/usr/bin/python3
"""estca -- a small test EST CA (RFC 7030, with the RFC 8951 clarifications).

Used by enrollgate's end-to-end tests of its EST registration-authority
feature. It is a test tool: keys are stored unencrypted (except the client
identities it hands out), every certificate request with a valid signature is
granted, and it only ever listens on the loopback interface.

Runs with Debian 12's /usr/bin/python3 (3.11) and python3-cryptography 38.0.4;
stdlib otherwise.

Commands
--------
  estca.py init --dir D
      Create (idempotently; existing files are kept) in D:
        ca.pem, ca.key             the EST CA (ECDSA P-256, self-signed)
        server.pem, server.key     TLS server cert, CN=localhost,
                                   SAN DNS:localhost, IP:127.0.0.1, IP:::1
        clientca.pem, clientca.key a separate CA for mTLS client identities

  estca.py issue-client --dir D --cn NAME --out PREFIX --password PW
                        [--key-type ec|rsa] [--days N]
      Issue a client certificate (by the client CA, EKU clientAuth) and write
        PREFIX.pem   certificate
        PREFIX.key   private key, encrypted PKCS#8 PEM (password PW)
        PREFIX.pass  the password, one line (mode 0600)
        PREFIX.p12   PKCS#12 with key and certificate (password PW)

  estca.py serve --dir D --port P [--host 127.0.0.1|::1] [--labels a,b]
                 [--client-ca FILE] [--basic USER:PASS]
                 [--mode ok|retry|fail|silent|junk|untyped] [--retry-after N]
                 [--mode-scope enroll|all] [--control-port CP]
                 [--ready-file F] [--port-file F]
      HTTPS EST server with server.pem/server.key. Paths:
        /.well-known/est/<op>  and  /.well-known/est/<label>/<op>
      ops: cacerts (GET), csrattrs (GET, 204), simpleenroll and
      simplereenroll (POST, base64 DER PKCS#10), serverkeygen (POST: a new
      P-256 key, multipart/mixed with the PKCS#8 key and the certificate,
      RFC 7030 4.4.2), fullcmc (501). --labels restricts the labels (case-sensitive; others 404; the
      unlabelled path always exists). --client-ca requires a TLS client
      certificate verified against FILE; --basic requires HTTP Basic on the
      enroll ops. Both may be given.

      Modes, for the enroll ops (and, with --mode-scope all, also for cacerts
      and csrattrs):
        ok      normal answers
        retry   202 Accepted with Retry-After: N (--retry-after, default 5)
        fail    500 with a text body
        silent  read the request, never answer, keep the connection open
                until the client closes it
        junk    200 application/pkcs7-mime with body "not base64 !!!"
        untyped issues as "ok" does, but the 200 answer has no Content-Type
        cutoff  200 whose head promises 400 bytes; 10 of them are sent, then
                the connection is closed

      Control channel (--control-port CP, plain HTTP on the same host):
        POST /mode   {"mode": "retry", "retry_after": 7, "scope": "enroll"}
                     (every key optional) -> 200 with the current settings
        GET  /mode   the current settings
        GET  /stats  {"requests": [{"op", "label", "client_cert_subject",
                     "basic_user", "status", ...}, ...], "tls_failures": [...]}
                     every request received, in arrival order; "status" is
                     null for requests held in silent mode
        POST /reset  forget the recorded requests and TLS failures

      --ready-file F gets "ready\\n" once both listeners accept connections.
      --port 0 (and --control-port 0) pick free ports; --port-file F then
      gets {"port": P, "control_port": CP} as JSON, written before F.
      SIGTERM / SIGINT end the server cleanly (exit status 0).
"""

import argparse
import base64
import datetime
import hmac
import http.server
import ipaddress
import json
import os
import select
import signal
import socket
import ssl
import sys
import threading

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

EST_PREFIX = "/.well-known/est/"
MODES = ("ok", "retry", "fail", "silent", "junk", "untyped", "cutoff")
SCOPES = ("enroll", "all")
ENROLL_OPS = ("simpleenroll", "simplereenroll")
# The HTTP method each known EST operation takes.
OP_METHODS = {
    "cacerts": "GET",
    "csrattrs": "GET",
    "simpleenroll": "POST",
    "simplereenroll": "POST",
    "serverkeygen": "POST",
    "fullcmc": "POST",
}
MAX_BODY = 1 << 20          # largest request body accepted
HANDSHAKE_TIMEOUT = 10      # seconds for the TLS handshake
IDLE_TIMEOUT = 30           # seconds a keep-alive connection may sit idle
SILENT_HOLD_MAX = 3600      # a silent-mode connection is dropped after this
JUNK_BODY = b"not base64 !!!"

# Set when the server is shutting down; releases connections held silently.
STOP = threading.Event()


def log(msg):
    """One line on stderr, flushed at once (tests may read it live)."""
    sys.stderr.write("estca: %s\n" % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# Files and certificates
# ---------------------------------------------------------------------------

def write_file(path, data, mode=0o644):
    """Write data to path atomically (temporary file + rename) with mode."""
    if isinstance(data, str):
        data = data.encode()
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)  # the umask may have narrowed or widened it
    finally:
        os.close(fd)
    os.replace(tmp, path)


def key_pem(key, password=None):
    """PKCS#8 PEM of a private key; encrypted (PBES2/AES-256) with password."""
    enc = (serialization.BestAvailableEncryption(password.encode())
           if password is not None else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8, enc)


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def load_pair(d, name):
    """Load <d>/<name>.pem and <d>/<name>.key (unencrypted key)."""
    with open(os.path.join(d, name + ".pem"), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(d, name + ".key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    return cert, key


def new_key(kind="ec"):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def now_utc():
    # cryptography 38 takes naive datetimes as UTC.
    return datetime.datetime.utcnow().replace(microsecond=0)


def make_ca(cn):
    """A self-signed CA (ECDSA P-256 / SHA-256), valid ten years."""
    key = new_key("ec")
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "enrollgate tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = now_utc() - datetime.timedelta(minutes=5)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def leaf_builder(subject, public_key, ca_cert, days, not_before=None):
    """A CertificateBuilder for an end-entity certificate issued by ca_cert:
    subject, key, random serial, validity, BasicConstraints CA:FALSE, SKI, AKI."""
    start = not_before or (now_utc() - datetime.timedelta(minutes=1))
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False))


def signature_key_usage(public_key):
    """KeyUsage for a TLS end entity: digitalSignature (+keyEncipherment for RSA)."""
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        data_encipherment=False, key_agreement=False, key_cert_sign=False,
        crl_sign=False, encipher_only=False, decipher_only=False)


def cmd_init(args):
    """estca.py init: create whatever of the CA, server and client-CA files is missing."""
    d = args.dir
    os.makedirs(d, exist_ok=True)

    def have(name):
        return (os.path.exists(os.path.join(d, name + ".pem"))
                and os.path.exists(os.path.join(d, name + ".key")))

    for name, cn in (("ca", "estca Test CA"), ("clientca", "estca Test Client CA")):
        if not have(name):
            cert, key = make_ca(cn)
            write_file(os.path.join(d, name + ".key"), key_pem(key), 0o600)
            write_file(os.path.join(d, name + ".pem"), cert_pem(cert))
            log("created %s.pem" % name)

    if not have("server"):
        ca_cert, ca_key = load_pair(d, "ca")
        key = new_key("ec")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        san = x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ])
        cert = (leaf_builder(subject, key.public_key(), ca_cert, days=3650)
                .add_extension(san, critical=False)
                .add_extension(signature_key_usage(key.public_key()), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        write_file(os.path.join(d, "server.key"), key_pem(key), 0o600)
        write_file(os.path.join(d, "server.pem"), cert_pem(cert))
        log("created server.pem")
    return 0


def cmd_issue_client(args):
    """estca.py issue-client: a clientAuth identity from the client CA, in PEM and PKCS#12."""
    ca_cert, ca_key = load_pair(args.dir, "clientca")
    key = new_key(args.key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, args.cn)])
    cert = (leaf_builder(subject, key.public_key(), ca_cert, days=args.days)
            .add_extension(signature_key_usage(key.public_key()), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    parent = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(parent, exist_ok=True)
    pw = args.password
    write_file(args.out + ".pem", cert_pem(cert))
    write_file(args.out + ".key", key_pem(key, pw), 0o600)
    write_file(args.out + ".pass", pw + "\n", 0o600)
    # With OpenSSL 3 underneath, BestAvailableEncryption gives PBES2 with
    # AES-256-CBC for key and certificates: readable without the legacy provider.
    p12 = pkcs12.serialize_key_and_certificates(
        args.cn.encode(), key, cert, None,
        serialization.BestAvailableEncryption(pw.encode()))
    write_file(args.out + ".p12", p12, 0o600)
    log("issued client certificate CN=%s -> %s.{pem,key,pass,p12}" % (args.cn, args.out))
    return 0


# ---------------------------------------------------------------------------
# EST server
# ---------------------------------------------------------------------------

def der_tlv(tag, content):
    """One DER element: tag byte, definite length, content."""
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(nb)]) + nb
    return bytes([tag]) + length + content


# DER of the OIDs id-signedData (1.2.840.113549.1.7.2) and id-data (1.2.840.113549.1.7.1).
OID_SIGNED_DATA = der_tlv(0x06, bytes.fromhex("2a864886f70d010702"))
OID_DATA = der_tlv(0x06, bytes.fromhex("2a864886f70d010701"))


def certs_only_pkcs7(certs):
    """DER of a degenerate ("certs-only") CMS SignedData holding certs.

    Built by hand rather than with pkcs7.serialize_certificates because
    cryptography 38 puts an empty eContent in the EncapsulatedContentInfo,
    which RFC 5652 section 5.2 says MUST be omitted when there are no signers.
    """
    signed_data = der_tlv(0x30, b"".join([
        der_tlv(0x02, b"\x01"),                        # version 1
        der_tlv(0x31, b""),                            # digestAlgorithms: none
        der_tlv(0x30, OID_DATA),                       # encapContentInfo, no eContent
        der_tlv(0xA0, b"".join(sorted(                 # [0] IMPLICIT certificates,
            c.public_bytes(serialization.Encoding.DER)  # a SET OF: DER order
            for c in certs))),
        der_tlv(0x31, b""),                            # signerInfos: none
    ]))
    return der_tlv(0x30, OID_SIGNED_DATA + der_tlv(0xA0, signed_data))


def b64_lines(der):
    """Base64 with a line break every 64 characters (and a final one)."""
    s = base64.b64encode(der).decode()
    return "".join(s[i:i + 64] + "\n" for i in range(0, len(s), 64)).encode()


class CSRError(Exception):
    """A certificate request that cannot be granted; the text goes in the 400 body."""


class State:
    """What the EST server and the control channel share: CA, settings, stats."""

    def __init__(self, args):
        self.dir = args.dir
        self.ca_cert, self.ca_key = load_pair(args.dir, "ca")
        self.labels = ([x for x in args.labels.split(",") if x]
                       if args.labels is not None else None)
        self.basic = args.basic.split(":", 1) if args.basic else None
        self.lock = threading.Lock()
        self.mode = args.mode
        self.retry_after = args.retry_after
        self.scope = args.mode_scope
        self.requests = []
        self.tls_failures = []
        self.cacerts_body = b64_lines(certs_only_pkcs7([self.ca_cert]))

    def settings(self):
        with self.lock:
            return {"mode": self.mode, "retry_after": self.retry_after, "scope": self.scope}

    def record(self, rec):
        """Append a request record (arrival order); the caller fills in "status" later."""
        with self.lock:
            self.requests.append(rec)

    def set_status(self, rec, status):
        """Fill in the HTTP status of a recorded request once it is answered."""
        with self.lock:
            rec["status"] = status

    def stats(self):
        with self.lock:
            # A deep copy, taken under the lock.
            return json.loads(json.dumps({
                "requests": self.requests, "tls_failures": self.tls_failures,
                "mode": self.mode, "retry_after": self.retry_after, "scope": self.scope}))

    def issue(self, csr_der, for_key=None):
        """Grant a DER PKCS#10: check its signature, copy subject and requested
        SAN, sign with the CA key (SHA-256), valid one day. Returns the cert,
        for for_key if given (serverkeygen), else for the CSR's key."""
        try:
            csr = x509.load_der_x509_csr(csr_der)
        except ValueError as e:
            raise CSRError("not a DER PKCS#10 request: %s" % e)
        try:
            public_key = csr.public_key()
            valid = csr.is_signature_valid
        except (UnsupportedAlgorithm, ValueError) as e:
            raise CSRError("unsupported key or signature algorithm: %s" % e)
        if not valid:
            raise CSRError("CSR signature is not valid")
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            san = None
        except ValueError as e:  # e.g. duplicate or malformed requested extensions
            raise CSRError("bad requested extensions: %s" % e)
        builder = leaf_builder(csr.subject, for_key if for_key is not None else public_key, self.ca_cert, days=1)
        if san is not None:
            builder = builder.add_extension(san.value, critical=san.critical)
        return builder.sign(self.ca_key, hashes.SHA256())


class ESTHandler(http.server.BaseHTTPRequestHandler):
    """One EST connection (HTTP/1.1, keep-alive) after the TLS handshake."""

    protocol_version = "HTTP/1.1"
    server_version = "estca"
    timeout = IDLE_TIMEOUT

    def version_string(self):
        return self.server_version  # no "Python/3.x" in the Server header

    def log_message(self, fmt, *a):
        # http.server's own messages (timeouts, bad request lines) only.
        log("%s %s" % (self.client_address[0], fmt % a))

    def log_request(self, code="-", size="-"):
        pass  # _handle logs one line per request instead

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def do_HEAD(self):
        self._handle()

    # -- helpers ----------------------------------------------------------

    def _read_body(self):
        """The request body (Content-Length or chunked); None if it is over MAX_BODY."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return out
                if len(out) + size > MAX_BODY:
                    return None
                out += self.rfile.read(size)
                self.rfile.readline(1024)
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            return None
        return self.rfile.read(n) if n > 0 else b""

    def _reply(self, status, body=b"", ctype="text/plain; charset=utf-8", headers=()):
        """Send a complete response; text bodies get a final newline."""
        if isinstance(body, str):
            body = (body + "\n").encode()
        self.send_response(status)
        if status != 204:
            if ctype is not None:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD" and status != 204:
            self.wfile.write(body)
        self.server.state.set_status(self.rec, status)

    def _client_subject(self):
        """RFC 4514 subject of the TLS client certificate, or None."""
        try:
            der = self.connection.getpeercert(binary_form=True)
        except (ValueError, AttributeError):
            return None
        if not der:
            return None
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()

    def _basic_user(self):
        """(user, ok) from an Authorization: Basic header; (None, False) without one."""
        auth = self.headers.get("Authorization", "")
        scheme, _, cred = auth.partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            user, _, pw = base64.b64decode(cred.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, False
        if self.server.state.basic is None:
            return user, True
        want_user, want_pw = self.server.state.basic
        ok = (hmac.compare_digest(user.encode(), want_user.encode())
              & hmac.compare_digest(pw.encode(), want_pw.encode()))
        return user, bool(ok)

    def _hold_silently(self):
        """silent mode: answer nothing, keep the connection until the client
        closes it (or the server stops, or SILENT_HOLD_MAX passes)."""
        sock = self.connection
        deadline = threading.Event()
        timer = threading.Timer(SILENT_HOLD_MAX, deadline.set)
        timer.daemon = True
        timer.start()
        try:
            while not STOP.is_set() and not deadline.is_set():
                r, _, _ = select.select([sock], [], [], 0.5)
                if not r:
                    continue
                try:
                    if not sock.recv(4096):
                        break  # client closed
                except (ssl.SSLWantReadError, socket.timeout):
                    continue
                except (OSError, ssl.SSLError):
                    break
        finally:
            timer.cancel()
        self.close_connection = True

    # -- the request ------------------------------------------------------

    def _handle(self):
        """Parse the EST path, record the request in the stats (before any
        check, so rejected requests show up too), answer, log one line."""
        state = self.server.state
        path = self.path.split("?", 1)[0]
        label, op = None, None
        if path.startswith(EST_PREFIX):
            parts = path[len(EST_PREFIX):].split("/")
            if len(parts) == 1:
                op = parts[0]
            elif len(parts) == 2:
                label, op = parts
        user, basic_ok = self._basic_user()
        self.rec = {"method": self.command, "path": self.path, "op": op, "label": label,
                    "client_cert_subject": self._client_subject(),
                    "basic_user": user, "basic_ok": basic_ok, "status": None}
        state.record(self.rec)
        try:
            self._dispatch(state, path, label, op, basic_ok)
        finally:
            log("%s %s %s -> %s (client=%s user=%s)" % (
                self.client_address[0], self.command, self.path,
                self.rec["status"] if self.rec["status"] is not None else "no answer",
                self.rec["client_cert_subject"], user))

    def _dispatch(self, state, path, label, op, basic_ok):
        """The answer, checked in this order: body framing and size, path and
        label (404), method (405), unimplemented ops (501), HTTP Basic on the
        enroll ops (401), then the current mode, then the real operation."""
        body = b""
        if self.command in ("POST", "PUT") or self.headers.get("Content-Length") \
                or self.headers.get("Transfer-Encoding"):
            try:
                body = self._read_body()
            except ValueError:
                self.close_connection = True
                return self._reply(400, "bad request body framing")
            if body is None:
                self.close_connection = True
                return self._reply(413, "request body too large")

        if op not in OP_METHODS or label == "" or (
                label is not None and state.labels is not None and label not in state.labels):
            return self._reply(404, "no such EST resource: %s" % path)
        if self.command != OP_METHODS[op]:
            return self._reply(405, "%s needs %s" % (op, OP_METHODS[op]),
                               headers=[("Allow", OP_METHODS[op])])
        if op == "fullcmc":
            return self._reply(501, "%s is not implemented" % op)
        if op in ENROLL_OPS + ("serverkeygen",) and state.basic is not None and not basic_ok:
            return self._reply(401, "HTTP Basic authentication required",
                               headers=[("WWW-Authenticate", 'Basic realm="estca"')])

        settings = state.settings()
        if op in ENROLL_OPS or settings["scope"] == "all":
            mode = settings["mode"]
            if mode == "retry":
                return self._reply(202, "request pending, retry later",
                                   headers=[("Retry-After", str(settings["retry_after"]))])
            if mode == "fail":
                return self._reply(500, "estca: failing on purpose (mode fail)")
            if mode == "silent":
                return self._hold_silently()
            if mode == "cutoff":
                self.send_response(200)
                self.send_header("Content-Type", "application/pkcs7-mime")
                self.send_header("Content-Length", "400")
                self.end_headers()
                self.wfile.write(b"MIIBxjCCAW")
                self.wfile.flush()
                self.close_connection = True
                self.server.state.set_status(self.rec, 200)
                return None
            if mode == "junk":
                return self._reply(200, JUNK_BODY, "application/pkcs7-mime",
                                   headers=[("Content-Transfer-Encoding", "base64")])

        if op == "cacerts":
            return self._reply(200, state.cacerts_body, "application/pkcs7-mime",
                               headers=[("Content-Transfer-Encoding", "base64")])
        if op == "csrattrs":
            return self._reply(204)

        # simpleenroll / simplereenroll / serverkeygen
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/pkcs10":
            return self._reply(415, "Content-Type must be application/pkcs10, not %r" % ctype)
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except ValueError:
            return self._reply(400, "request body is not base64")
        key = ec.generate_private_key(ec.SECP256R1()) if op == "serverkeygen" else None
        try:
            cert = state.issue(der, key.public_key() if key else None)
        except CSRError as e:
            return self._reply(400, str(e))
        if key is not None:
            # RFC 7030 4.4.2: multipart/mixed, the private key (PKCS#8) and the certificate
            with state.lock:
                self.rec["issued_serial"] = "%x" % cert.serial_number
                self.rec["issued_subject"] = cert.subject.rfc4514_string()
            pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
            b = "estcaServerKeyGenBoundary"
            body = ("--%s\r\nContent-Type: application/pkcs8\r\nContent-Transfer-Encoding: base64\r\n\r\n%s\r\n"
                    "--%s\r\nContent-Type: application/pkcs7-mime; smime-type=certs-only\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--%s--\r\n") % (
                        b, b64_lines(pkcs8).decode().strip(), b, b64_lines(certs_only_pkcs7([cert])).decode().strip(), b)
            return self._reply(200, body.encode(), "multipart/mixed; boundary=%s" % b)
        with state.lock:
            self.rec["issued_serial"] = "%x" % cert.serial_number
            self.rec["issued_subject"] = cert.subject.rfc4514_string()
        untyped = (op in ENROLL_OPS or settings["scope"] == "all") and settings["mode"] == "untyped"
        return self._reply(200, b64_lines(certs_only_pkcs7([cert])),
                           None if untyped else "application/pkcs7-mime; smime-type=certs-only",
                           headers=[("Content-Transfer-Encoding", "base64")])


class LoopbackServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server bound to a loopback address only."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, host, port, handler, state):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.state = state
        super().__init__((host, port), handler)

    def get_request(self):
        # The handler writes an answer's head and body in separate sends: without TCP_NODELAY,
        # Nagle holds the body until the client's delayed ACK, 40 ms per answer.
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    def handle_error(self, request, client_address):
        # A client that goes away mid-answer is routine here: one line, no traceback.
        log("%s connection error: %s" % (client_address[0], sys.exc_info()[1]))


class TLSServer(LoopbackServer):
    """EST over TLS; the handshake runs in the connection's own thread, so a
    slow or failing client never holds up the others."""

    def __init__(self, host, port, handler, state, ssl_ctx):
        self.ssl_ctx = ssl_ctx
        super().__init__(host, port, handler, state)

    def finish_request(self, request, client_address):
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log("%s TLS handshake failed: %s" % (client_address[0], e))
            with self.state.lock:
                self.state.tls_failures.append({"peer": client_address[0], "error": str(e)})
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            # Send close_notify (so TLS clients see a clean close, not an
            # unexpected EOF) without waiting long for the peer's own.
            try:
                conn.settimeout(0.5)
                conn.unwrap()
            except (OSError, ValueError):
                pass
            conn.close()


class ControlHandler(http.server.BaseHTTPRequestHandler):
    """The plain-HTTP control channel: /mode, /stats, /reset."""

    protocol_version = "HTTP/1.1"
    server_version = "estca-control"
    timeout = IDLE_TIMEOUT

    def version_string(self):
        return self.server_version  # no "Python/3.x" in the Server header

    def log_message(self, fmt, *a):
        pass

    def _json(self, status, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        state = self.server.state
        if self.path == "/stats":
            return self._json(200, state.stats())
        if self.path == "/mode":
            return self._json(200, state.settings())
        return self._json(404, {"error": "unknown path"})

    def do_POST(self):
        state = self.server.state
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if 0 < n <= MAX_BODY else b""
        if self.path == "/reset":
            with state.lock:
                state.requests.clear()
                state.tls_failures.clear()
            return self._json(200, {"ok": True})
        if self.path != "/mode":
            return self._json(404, {"error": "unknown path"})
        try:
            req = json.loads(raw or b"{}")
            mode = req.get("mode")
            retry_after = req.get("retry_after")
            scope = req.get("scope")
            if mode is not None and mode not in MODES:
                raise ValueError("mode must be one of %s" % ", ".join(MODES))
            if scope is not None and scope not in SCOPES:
                raise ValueError("scope must be one of %s" % ", ".join(SCOPES))
            if retry_after is not None and (not isinstance(retry_after, int)
                                            or retry_after < 0):
                raise ValueError("retry_after must be a non-negative integer")
        except (ValueError, AttributeError) as e:
            return self._json(400, {"error": str(e)})
        with state.lock:
            if mode is not None:
                state.mode = mode
            if retry_after is not None:
                state.retry_after = retry_after
            if scope is not None:
                state.scope = scope
        log("control: %s" % json.dumps(state.settings()))
        return self._json(200, state.settings())


def cmd_serve(args):
    """estca.py serve: run the EST server (and the control channel) until SIGTERM/SIGINT."""
    state = State(args)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(args.dir, "server.pem"),
                        os.path.join(args.dir, "server.key"))
    if args.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=args.client_ca)

    servers = [TLSServer(args.host, args.port, ESTHandler, state, ctx)]
    if args.control_port is not None:
        servers.append(LoopbackServer(args.host, args.control_port, ControlHandler, state))
    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()

    def on_signal(signum, frame):
        STOP.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    port = servers[0].server_address[1]
    cport = servers[1].server_address[1] if len(servers) > 1 else None
    # Both sockets are bound and listening since their constructors ran.
    if args.port_file:
        write_file(args.port_file, json.dumps({"port": port, "control_port": cport}) + "\n")
    if args.ready_file:
        write_file(args.ready_file, "ready\n")
    host = "[%s]" % args.host if ":" in args.host else args.host
    log("serving EST on https://%s:%d%s (mode %s, labels %s, client-ca %s, basic %s)" % (
        host, port, "" if cport is None else ", control on port %d" % cport,
        state.mode, ",".join(state.labels) if state.labels is not None else "any",
        args.client_ca or "no", "yes" if state.basic else "no"))

    while not STOP.wait(0.5):
        pass
    for s in servers:
        s.shutdown()
        s.server_close()
    log("stopped")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description="A small test EST CA (RFC 7030 / RFC 8951).")
    sub = p.add_subparsers(dest="cmd", required=True)

    pi = sub.add_parser("init", help="create the CA, server and client-CA files")
    pi.add_argument("--dir", required=True)

    pc = sub.add_parser("issue-client", help="issue an mTLS client identity")
    pc.add_argument("--dir", required=True)
    pc.add_argument("--cn", required=True)
    pc.add_argument("--out", required=True, help="path prefix of the files written")
    pc.add_argument("--password", required=True)
    pc.add_argument("--key-type", choices=("ec", "rsa"), default="ec")
    pc.add_argument("--days", type=int, default=30)

    ps = sub.add_parser("serve", help="run the EST server")
    ps.add_argument("--dir", required=True)
    ps.add_argument("--port", type=int, required=True)
    ps.add_argument("--host", choices=("127.0.0.1", "::1"), default="127.0.0.1")
    ps.add_argument("--labels", help="comma-separated labels that exist (default: any)")
    ps.add_argument("--client-ca", help="require TLS client certs verified against this file")
    ps.add_argument("--basic", metavar="USER:PASS", help="require HTTP Basic on enroll ops")
    ps.add_argument("--mode", choices=MODES, default="ok")
    ps.add_argument("--retry-after", type=int, default=5)
    ps.add_argument("--mode-scope", choices=SCOPES, default="enroll",
                    help="ops the mode applies to: enroll ops only, or all")
    ps.add_argument("--control-port", type=int)
    ps.add_argument("--ready-file")
    ps.add_argument("--port-file")

    args = p.parse_args(argv)
    if args.cmd == "serve" and args.basic is not None and ":" not in args.basic:
        p.error("--basic takes USER:PASS")
    return {"init": cmd_init, "issue-client": cmd_issue_client, "serve": cmd_serve}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
