"""End-to-end tests of the EST registration authority: devices (curl, openssl) -> enrollgate ->
the test EST CA (tests/est/estca.py) over mutual TLS, everything on 127.0.0.1."""
import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.request

from harness import EG_SRC, Daemon, free_port, read_all

PY = "/usr/bin/python3"  # Debian's, with python3-cryptography (see tests/est/README.md)
ESTCA = os.path.join(EG_SRC, "tests", "est", "estca.py")


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, **kw)


def pbkdf2_hash(password, iterations=20000):
    salt = os.urandom(16)
    h = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "pbkdf2-sha256$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(), base64.b64encode(h).decode())


class CA:
    """estca serve on a free port, with its control channel."""

    def __init__(self, d, *extra, port=None):
        self.d, self.extra = d, extra
        self.host = "[::1]" if "::1" in extra else "127.0.0.1"
        self.port, self.control = port or free_port(), free_port()
        ready = os.path.join(d, "ready-%d" % self.port)
        if os.path.exists(ready):
            os.unlink(ready)  # a restart on the same port
        self.proc = subprocess.Popen([PY, ESTCA, "serve", "--dir", d, "--port", str(self.port), "--control-port",
                                      str(self.control), "--ready-file", ready] + list(extra),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("estca did not start")
            time.sleep(0.05)

    def ctl(self, path, body=None):
        req = urllib.request.Request("http://%s:%d%s" % (self.host, self.control, path),
                                     data=json.dumps(body).encode() if body is not None else None,
                                     method="POST" if body is not None else "GET")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read() or b"{}")

    def requests(self):
        return self.ctl("/stats")["requests"]

    def mode(self, mode, **kw):
        self.ctl("/mode", dict(mode=mode, **kw))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


EST_LUA = """
local est = require("policies.est")
return {
  listen = { "127.0.0.1:%(port)d" },
  tls = { cert = "%(d)s/server.pem", key = "%(d)s/server.key", device_ca = "%(d)s/clientca.pem" },
  identity = %(identity)s,
  users = { ["dev-basic"] = "%(hash)s" },
  timeouts = { connect = 1, tls = 0.6, response = %(response)s },
  retry_after = 42,
  down_hold = 0,
  cacerts_cache = 1,
  labels = {
    [""]  = { upstreams = { "https://127.0.0.1:%(ca)d/.well-known/est" }, trust = "%(d)s/ca.pem" },
    VPN   = { upstreams = { "https://127.0.0.1:%(ca)d/.well-known/est/VPN" }, trust = "%(d)s/ca.pem",
              auth = { "cert", "basic" } },
    fail  = { upstreams = { "https://127.0.0.1:%(dead)d/.well-known/est", "https://127.0.0.1:%(ca)d/.well-known/est" },
              trust = "%(d)s/ca.pem" },
    down  = { upstreams = { "https://127.0.0.1:%(dead)d/.well-known/est" }, trust = "%(d)s/ca.pem" },
    hang  = { upstreams = { "https://127.0.0.1:%(hang)d/.well-known/est", "https://127.0.0.1:%(ca)d/.well-known/est" },
              trust = "%(d)s/ca.pem" },
    synhang = { upstreams = { "https://127.0.0.1:%(synhang)d/.well-known/est", "https://127.0.0.1:%(ca)d/.well-known/est" },
                trust = "%(d)s/ca.pem" },
    v6    = { upstreams = { "https://[::1]:%(ca6)d/.well-known/est" }, trust = "%(d)s/ca.pem" },
    upbasic = { upstreams = { "https://127.0.0.1:%(cab)d/.well-known/est" }, trust = "%(d)s/ca.pem",
                upstream_auth = { user = "ra-user", password_file = "%(d)s/up.pass" } },
    upnone  = { upstreams = { "https://127.0.0.1:%(cab)d/.well-known/est" }, trust = "%(d)s/ca.pem" },
    strict = { upstreams = { "https://127.0.0.1:%(ca)d/.well-known/est" }, trust = "%(d)s/ca.pem",
               auth = { csrattrs = { "cert" }, simpleenroll = { "cert+basic" }, simplereenroll = "none" } },
  },
  on_enroll = est.policy{ labels = { ["*"] = { cn_in_san = true }, VPN = { dns_under = { %(vpn_domain)s } } } },
}
"""


class EstTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = tempfile.mkdtemp(prefix="eg-est-")
        d = cls.d
        r = run(PY, ESTCA, "init", "--dir", d)
        assert r.returncode == 0, r.stderr
        # the appliance identity (encrypted key + passphrase file) and a device identity
        for cn, out in (("enrollgate-appliance", "appliance"), ("device1.example.com", "device")):
            r = run(PY, ESTCA, "issue-client", "--dir", d, "--cn", cn, "--out", os.path.join(d, out),
                    "--password", "pw-" + out)
            assert r.returncode == 0, r.stderr
        cls.ca = CA(d, "--client-ca", os.path.join(d, "clientca.pem"), "--labels", "VPN")
        # a CA that wants HTTP Basic from the RA besides its certificate (upstream_auth)
        cls.ca_basic = CA(d, "--client-ca", os.path.join(d, "clientca.pem"), "--basic", "ra-user:pw-toward-ca")
        with open(os.path.join(d, "up.pass"), "w") as f:
            f.write("pw-toward-ca\n")
        # a listener that never accepts: TCP connects (backlog), the TLS handshake never starts
        import socket
        cls.hang = socket.socket()
        cls.hang.bind(("127.0.0.1", 0))
        cls.hang.listen(16)
        # a listener whose accept queue is full: further SYNs are dropped, TCP never connects
        cls.synhang = socket.socket()
        cls.synhang.bind(("127.0.0.1", 0))
        cls.synhang.listen(0)
        cls.synhang_fill = []
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(cls.synhang.getsockname())
            except BlockingIOError:
                pass
            cls.synhang_fill.append(s)
        cls.ca6 = None
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            cls.ca6_port = probe.getsockname()[1]
            probe.close()
            cls.ca6 = CA(d, "--host", "::1", "--client-ca", os.path.join(d, "clientca.pem"), port=cls.ca6_port)
        except (OSError, RuntimeError):
            cls.ca6_port = 1
        cls.est_port, cls.dead = free_port(), free_port()
        cls.eg = Daemon()
        cls.write_est()
        cls.eg.start()

    @classmethod
    def tearDownClass(cls):
        cls.eg.stop()
        cls.ca.stop()
        cls.ca_basic.stop()
        cls.hang.close()
        for s in cls.synhang_fill + [cls.synhang]:
            s.close()
        if cls.ca6:
            cls.ca6.stop()
        shutil.rmtree(cls.d, ignore_errors=True)

    @classmethod
    def est_text(cls, vpn_domain='"vpn.example.com"', response=3, identity=None, password="s3cret"):
        """est.lua for this test's CAs and identities."""
        d = cls.d
        if identity is None:
            identity = '{ cert = "%s/appliance.pem", key = "%s/appliance.key", passphrase_file = "%s/appliance.pass" }' % (d, d, d)
        return EST_LUA % dict(port=cls.est_port, d=d, ca=cls.ca.port, cab=cls.ca_basic.port, dead=cls.dead, response=response,
                              hang=cls.hang.getsockname()[1], synhang=cls.synhang.getsockname()[1], ca6=cls.ca6_port,
                              hash=pbkdf2_hash(password), vpn_domain=vpn_domain, identity=identity)

    @classmethod
    def write_est(cls, **kw):
        with open(os.path.join(cls.eg.conf, "est.lua"), "w") as f:
            f.write(cls.est_text(**kw))

    # --- helpers ---

    def url(self, label, op):
        return "https://localhost:%d/.well-known/est/%s%s" % (self.est_port, label + "/" if label else "", op)

    def curl(self, url, *args, cert=True, body=None):
        cmd = ["curl", "-sS", "--max-time", "20", "--cacert", os.path.join(self.d, "ca.pem"),
               "-D", "-", "-o", os.path.join(self.d, "out.bin")]
        if cert:
            cmd += ["--cert", os.path.join(self.d, "device.pem"), "--key", os.path.join(self.d, "device.key"),
                    "--pass", "pw-device"]
        if body is not None:
            path = os.path.join(self.d, "body.txt")
            with open(path, "w") as f:
                f.write(body)
            cmd += ["-H", "Content-Type: application/pkcs10", "--data-binary", "@" + path]
        r = run(*(cmd + list(args) + [url]))
        head = r.stdout.split("\r\n\r\n")[0]
        status = int(head.split()[1]) if head.startswith("HTTP/") else 0
        with open(os.path.join(self.d, "out.bin"), "rb") as f:
            out = f.read()
        return status, head, out

    def csr(self, name, *keyopts, cn=None, sans=None, wrap=True):
        """A fresh key and base64 PKCS#10 (with line breaks if wrap)."""
        key = os.path.join(self.d, name + ".key")
        r = run("openssl", "genpkey", *keyopts, "-out", key)
        self.assertEqual(r.returncode, 0, r.stderr)
        cn = cn or "%s.example.com" % name
        sans = sans or "DNS:%s" % cn
        r = subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=" + cn, "-addext",
                            "subjectAltName=" + sans, "-outform", "DER"], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        b = base64.b64encode(r.stdout).decode()
        return "\n".join(b[i:i + 64] for i in range(0, len(b), 64)) + "\n" if wrap else b

    def issued_cert(self, body):
        der = base64.b64decode(body)
        pem = os.path.join(self.d, "issued.pem")
        r = subprocess.run(["openssl", "pkcs7", "-inform", "DER", "-print_certs", "-out", pem], input=der,
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return pem

    def audit(self, pred):
        return [r for r in self.eg.log_records() if r.get("event") == "enroll" and pred(r)]

    def ca_count(self):
        return len(self.ca.requests())

    # --- tests ---

    def test_cacerts_relayed(self):
        status, head, out = self.curl(self.url("", "cacerts"), cert=False)
        self.assertEqual(status, 200, head)
        self.assertIn("application/pkcs7-mime", head.lower())
        pem = self.issued_cert(out)
        r = run("openssl", "x509", "-in", pem, "-noout", "-fingerprint", "-sha256")
        r2 = run("openssl", "x509", "-in", os.path.join(self.d, "ca.pem"), "-noout", "-fingerprint", "-sha256")
        self.assertEqual(r.stdout, r2.stdout)

    def test_cacerts_cache_and_stale_answer_while_down(self):
        time.sleep(1.1)  # whatever earlier tests cached is stale now
        before = self.ca_count()
        s1, _, first = self.curl(self.url("", "cacerts"), cert=False)
        s2, _, second = self.curl(self.url("", "cacerts"), cert=False)
        self.assertEqual((s1, s2), (200, 200))
        self.assertEqual(first, second)
        self.assertEqual(self.ca_count(), before + 1)  # the second one came from the cache
        self.assertEqual(self.audit(lambda r: r.get("op") == "cacerts")[-1]["result"], "cached")
        time.sleep(1.1)
        try:
            self.ca.ctl("/mode", {"mode": "silent", "scope": "all"})
            s3, head, third = self.curl(self.url("", "cacerts"), cert=False)
            self.assertEqual(s3, 200, head)
            self.assertEqual(third, first)
            self.assertEqual(self.audit(lambda r: r.get("op") == "cacerts")[-1]["result"], "cached-upstream-down")
        finally:
            self.ca.ctl("/mode", {"mode": "ok", "scope": "enroll"})
        m = self.eg.metrics()
        self.assertGreaterEqual(m['enrollgate_est_requests_total{label="",result="cached"}'], 1)
        self.assertGreaterEqual(m['enrollgate_est_requests_total{label="",result="cached-upstream-down"}'], 1)

    def test_resumed_tls_session_with_client_certificate(self):
        import socket
        import ssl
        ctx = ssl.create_default_context(cafile=os.path.join(self.d, "ca.pem"))
        ctx.load_cert_chain(os.path.join(self.d, "device.pem"), os.path.join(self.d, "device.key"), "pw-device")
        session = None
        for attempt in range(2):
            with socket.create_connection(("127.0.0.1", self.est_port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                    s.sendall(b"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    out = read_all(s)
                    self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:100])
                    if attempt == 1:
                        self.assertTrue(s.session_reused)
                    session = s.session

    def test_every_accepted_key_type_enrolls(self):
        keys = {
            "rsa2048": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            "rsa3072": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"],
            "rsa4096": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
            "ed25519": ["-algorithm", "ED25519"],
        }
        for curve in ("brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1", "prime256v1", "secp256k1",
                      "secp384r1", "secp521r1"):
            keys[curve] = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:" + curve]
        issued = {}
        for name, opts in keys.items():
            before = self.ca_count()
            status, head, out = self.curl(self.url("", "simpleenroll"), body=self.csr(name, *opts))
            self.assertEqual(status, 200, "%s: %s %s" % (name, head, out[:200]))
            pem = self.issued_cert(out)
            r = run("openssl", "verify", "-CAfile", os.path.join(self.d, "ca.pem"), pem)
            self.assertEqual(r.returncode, 0, name + r.stdout + r.stderr)
            self.assertIn("%s.example.com" % name, run("openssl", "x509", "-in", pem, "-noout", "-subject").stdout)
            issued[name] = run("openssl", "x509", "-in", pem, "-noout", "-serial", "-enddate", "-subject",
                               "-nameopt", "RFC2253").stdout
            reqs = self.ca.requests()
            self.assertEqual(len(reqs), before + 1)
            # the CA saw the appliance's identity, not the device's
            self.assertIn("enrollgate-appliance", reqs[-1]["client_cert_subject"])
        recs = self.audit(lambda r: r.get("result") == "issued" and "secp521r1" in r.get("csr_key", ""))
        self.assertTrue(recs, self.eg.log()[-2000:])
        # serial and notAfter of the certificate the device got, as openssl prints them
        self.assertIn("serial=%s\n" % recs[-1]["issued_serial"], issued["secp521r1"])
        self.assertIn("notAfter=%s\n" % recs[-1]["issued_not_after"], issued["secp521r1"])
        self.assertIn("subject=%s\n" % recs[-1]["issued_subject"], issued["secp521r1"])
        self.assertIn("device1.example.com", recs[-1]["device_cert"])

    def test_refused_keys_never_reach_the_ca(self):
        for name, opts, why in (
                ("rsa1024", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"], "RSA key size 1024"),
                ("p192", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime192v1"], "prime192v1"),
                ("ed448", ["-algorithm", "ED448"], "ED448")):
            before = self.ca_count()
            status, head, out = self.curl(self.url("", "simpleenroll"), body=self.csr(name, *opts))
            self.assertEqual(status, 400, head)
            self.assertIn(why.encode(), out)
            self.assertEqual(self.ca_count(), before)

    def test_bad_signature_and_garbage(self):
        body = self.csr("sig", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", wrap=False)
        der = bytearray(base64.b64decode(body))
        der[-1] ^= 1
        before = self.ca_count()
        status, _, out = self.curl(self.url("", "simpleenroll"), body=base64.b64encode(bytes(der)).decode())
        self.assertEqual(status, 400)
        self.assertIn(b"proof of possession", out)
        status, _, out = self.curl(self.url("", "simpleenroll"), body="not base64 !!!")
        self.assertEqual(status, 400)
        self.assertEqual(self.ca_count(), before)

    def test_unwrapped_base64(self):
        status, head, _ = self.curl(self.url("", "simpleenroll"),
                                    body=self.csr("flat", "-algorithm", "ED25519", wrap=False))
        self.assertEqual(status, 200, head)

    def test_labels_are_routed_and_case_sensitive(self):
        ok = self.csr("gw1.vpn", "-algorithm", "ED25519", cn="gw1.vpn.example.com")
        status, head, out = self.curl(self.url("VPN", "simpleenroll"), body=ok)
        self.assertEqual(status, 200, head + out.decode(errors="replace"))
        self.assertEqual(self.ca.requests()[-1]["label"], "VPN")
        status, _, _ = self.curl(self.url("vpn", "simpleenroll"), body=ok)
        self.assertEqual(status, 404)
        status, _, _ = self.curl(self.url("nosuch", "cacerts"), cert=False)
        self.assertEqual(status, 404)
        status, _, out = self.curl(self.url("VPN", "simpleenroll"),
                                   body=self.csr("other", "-algorithm", "ED25519", cn="x.example.org"))
        self.assertEqual(status, 400)
        self.assertIn(b"not under", out)

    def test_credentials_required(self):
        body = self.csr("nocred", "-algorithm", "ED25519")
        before = self.ca_count()
        status, head, _ = self.curl(self.url("", "simpleenroll"), cert=False, body=body)
        self.assertEqual(status, 401, head)
        status, head, _ = self.curl(self.url("VPN", "simpleenroll"), "-u", "dev-basic:wrong", cert=False, body=body)
        self.assertEqual(status, 401)
        self.assertIn("www-authenticate: basic", head.lower())
        self.assertEqual(self.ca_count(), before)
        body = self.csr("basic.vpn", "-algorithm", "ED25519", cn="basic.vpn.example.com")
        status, head, _ = self.curl(self.url("VPN", "simpleenroll"), "-u", "dev-basic:s3cret", cert=False, body=body)
        self.assertEqual(status, 200, head)
        self.assertEqual(self.audit(lambda r: r.get("user") == "dev-basic")[-1]["result"], "issued")

    def test_authentication_per_operation(self):
        # csrattrs: public by default (RFC 7030 4.5.1), a client certificate on "strict"
        status, head, _ = self.curl(self.url("", "csrattrs"), cert=False)
        self.assertEqual(status, 204, head)
        status, head, _ = self.curl(self.url("strict", "csrattrs"), cert=False)
        self.assertEqual(status, 401, head)
        status, head, _ = self.curl(self.url("strict", "csrattrs"))
        self.assertEqual(status, 204, head)
        # simpleenroll on "strict": certificate and password, both
        before = self.ca_count()
        body = self.csr("strict1", "-algorithm", "ED25519")
        status, head, out = self.curl(self.url("strict", "simpleenroll"), body=body)
        self.assertEqual(status, 401, head)
        self.assertIn(b"client certificate and password required", out)
        status, head, _ = self.curl(self.url("strict", "simpleenroll"), "-u", "dev-basic:s3cret", cert=False, body=body)
        self.assertEqual(status, 401, head)
        self.assertEqual(self.ca_count(), before)
        status, head, _ = self.curl(self.url("strict", "simpleenroll"), "-u", "dev-basic:s3cret", body=body)
        self.assertEqual(status, 200, head)
        rec = self.audit(lambda r: r.get("label") == "strict" and r.get("op") == "simpleenroll")[-1]
        self.assertEqual((rec["result"], rec["user"]), ("issued", "dev-basic"))
        self.assertIn("device1.example.com", rec["device_cert"])
        # "none": a re-enrollment without any credential reaches the policy, which wants the
        # certificate being renewed
        status, _, out = self.curl(self.url("strict", "simplereenroll"), cert=False, body=body)
        self.assertEqual(status, 400)
        self.assertIn(b"needs the client certificate being renewed", out)

    def test_basic_toward_the_ca(self):
        # a CA that wants HTTP Basic: refused without upstream_auth (its 401, relayed), issued with it
        body = self.csr("upb", "-algorithm", "ED25519")
        status, head, _ = self.curl(self.url("upnone", "simpleenroll"), body=body)
        self.assertEqual(status, 401, head)
        self.assertEqual(self.audit(lambda r: r.get("label") == "upnone")[-1]["result"], "refused-by-ca")
        status, head, _ = self.curl(self.url("upbasic", "simpleenroll"), body=body)
        self.assertEqual(status, 200, head)
        req = self.ca_basic.requests()[-1]
        self.assertEqual((req["basic_user"], req["basic_ok"]), ("ra-user", True))
        self.assertIn("enrollgate-appliance", req["client_cert_subject"])  # and still the appliance's certificate
        log = self.eg.log()
        self.assertNotIn("pw-toward-ca", log)
        self.assertNotIn(base64.b64encode(b"ra-user:pw-toward-ca").decode(), log)

    def test_bad_auth_settings_are_check_errors(self):
        for auth, msg in (('{ "cert" }, upstream_auth = { user = "a:b", password_file = "up.pass" }', "without ':'"),
                          ('{ "cert" }, upstream_auth = { user = "a", password_file = "nope.pass" }', "cannot read a password"),
                          ('{ bogus = { "cert" } }', "'bogus' is not an EST operation"),
                          ('"none"', '"none" only per operation'),
                          ('{ csrattrs = { "password" } }', "unknown method"),
                          ('{ simpleenroll = 5 }', 'labels["x"].simpleenroll: expected a list')):
            conf = tempfile.mkdtemp(prefix="eg-est-auth-")
            try:
                shutil.copytree(self.eg.conf, conf, dirs_exist_ok=True)
                text = self.est_text().replace('  labels = {\n', '  labels = {\n    x = { upstreams = { "https://127.0.0.1:1/" }, '
                                               'trust = "%s/ca.pem", auth = %s },\n' % (self.d, auth), 1)
                with open(os.path.join(conf, "est.lua"), "w") as f:
                    f.write(text)
                r = run(os.environ.get("EG_BIN", "build/enrollgate"), "check", "-c", conf)
                self.assertEqual(r.returncode, 1, auth)
                self.assertIn(msg, r.stdout + r.stderr, auth)
            finally:
                shutil.rmtree(conf, ignore_errors=True)

    def test_reenroll_must_keep_the_names(self):
        # the device certificate is CN=device1.example.com (no SAN): a request for other names is refused
        body = self.csr("re", "-algorithm", "ED25519", cn="device2.example.com")
        before = self.ca_count()
        status, _, out = self.curl(self.url("", "simplereenroll"), body=body)
        self.assertEqual(status, 400)
        self.assertIn(b"differs from the certificate being renewed", out)
        self.assertEqual(self.ca_count(), before)

    def test_failover_and_all_down(self):
        body = self.csr("fo", "-algorithm", "ED25519")
        status, head, _ = self.curl(self.url("fail", "simpleenroll"), body=body)
        self.assertEqual(status, 200, head)
        rec = self.audit(lambda r: r.get("label") == "fail")[-1]
        self.assertIn(str(self.ca.port), rec["upstream"])
        t0 = time.time()
        status, head, _ = self.curl(self.url("down", "simpleenroll"), body=body)
        self.assertEqual(status, 503, head)
        self.assertIn("retry-after: 42", head.lower())
        self.assertLess(time.time() - t0, 10)

    def test_error_wording_comes_from_policies_errors(self):
        body = self.csr("wording", "-algorithm", "ED25519")
        status, head, out = self.curl(self.url("down", "simpleenroll"), body=body)
        self.assertEqual(status, 503)
        self.assertIn(b"no upstream CA answered", out)
        mine = os.path.join(self.eg.conf, "policies")
        os.makedirs(mine, exist_ok=True)
        with open(os.path.join(EG_SRC, "lua", "policies", "errors.lua")) as f:
            text = f.read().replace('"no upstream CA answered"', '"the PKI is resting, come back later"')
        with open(os.path.join(mine, "errors.lua"), "w") as f:
            f.write(text)
        try:
            self.eg.reload()
            status, head, out = self.curl(self.url("down", "simpleenroll"), body=body)
            self.assertEqual(status, 503)
            self.assertIn("retry-after: 42", head.lower())
            self.assertIn(b"the PKI is resting", out)
        finally:
            shutil.rmtree(mine)
            self.eg.reload()

    def test_ca_restart_does_not_fail_requests(self):
        # the kept-alive upstream connection dies with the CA; the next request gets a fresh one
        body = self.csr("restart", "-algorithm", "ED25519")
        status, head, _ = self.curl(self.url("", "simpleenroll"), body=body)
        self.assertEqual(status, 200, head)
        old = self.ca
        old.stop()
        type(self).ca = CA(old.d, *old.extra, port=old.port)
        for _ in range(3):
            status, head, _ = self.curl(self.url("", "simpleenroll"), body=body)
            self.assertEqual(status, 200, head)
        self.assertEqual(len(self.ca.requests()), 3)

    def test_connect_and_tls_timeouts_fail_over(self):
        # timeouts.connect = 1: an upstream whose TCP connection never completes is left after 1 s;
        # timeouts.tls = 0.6: one that accepts TCP and never answers the handshake after 0.6 s more
        for label, phase, limit, lo, hi in (("synhang", "TCP connection", "1.0", 0.9, 2.2),
                                            ("hang", "TLS handshake", "0.6", 0.55, 1.6)):
            body = self.csr(label, "-algorithm", "ED25519")
            t0 = time.time()
            status, head, _ = self.curl(self.url(label, "simpleenroll"), body=body)
            took = time.time() - t0
            self.assertEqual(status, 200, head)
            self.assertGreater(took, lo, label)
            self.assertLess(took, hi, label)  # then the live CA (response timeout is 3 s)
            self.assertIn(str(self.ca.port), self.audit(lambda r, l=label: r.get("label") == l)[-1]["upstream"])
            self.assertIn("did not complete the %s in %s s" % (phase, limit), self.eg.log())

    def test_ipv6_literal_upstream(self):
        if not self.ca6:
            self.skipTest("no IPv6 loopback here")
        status, head, _ = self.curl(self.url("v6", "simpleenroll"), body=self.csr("v6", "-algorithm", "ED25519"))
        self.assertEqual(status, 200, head)
        self.assertEqual(len(self.ca6.requests()), 1)

    def test_sigterm_waits_for_an_enrollment_in_flight(self):
        import threading
        eg2 = Daemon(settings="return { limits = { drain_timeout = 10 } }")
        port2 = free_port()
        with open(os.path.join(self.eg.conf, "est.lua")) as f:
            text = f.read().replace("127.0.0.1:%d\" }" % self.est_port, "127.0.0.1:%d\" }" % port2, 1)
        with open(os.path.join(eg2.conf, "est.lua"), "w") as f:
            f.write(text)
        eg2.start()
        result = {}
        body = self.csr("drain", "-algorithm", "ED25519")
        url = self.url("", "simpleenroll").replace(":%d/" % self.est_port, ":%d/" % port2)
        try:
            self.ca.mode("silent")
            t = threading.Thread(target=lambda: result.update(r=self.curl(url, body=body)))
            t.start()
            time.sleep(0.8)  # the request is with the CA now
            t0 = time.time()
            eg2.proc.send_signal(signal.SIGTERM)
            t.join(20)
            eg2.proc.wait(20)
            # answered (503 after the 3 s response timeout) before the daemon left, well within drain_timeout
            self.assertEqual(result["r"][0], 503, result)
            self.assertGreater(time.time() - t0, 1.5)
            self.assertEqual(eg2.proc.returncode, 0)
        finally:
            self.ca.mode("ok")
            if eg2.proc.poll() is None:
                eg2.stop()

    def test_max_connections_pauses_accepting(self):
        import socket
        eg2 = Daemon()
        port2 = free_port()
        with open(os.path.join(self.eg.conf, "est.lua")) as f:
            text = f.read().replace("127.0.0.1:%d\" }" % self.est_port, "127.0.0.1:%d\" }" % port2, 1)
        with open(os.path.join(eg2.conf, "est.lua"), "w") as f:
            f.write(text.replace("return {", "return {\n  max_connections = 2,", 1))
        eg2.start()
        url = self.url("", "cacerts").replace(":%d/" % self.est_port, ":%d/" % port2)
        idle = []
        try:
            self.assertEqual(self.curl(url)[0], 200)
            # two connections that never say anything fill the limit: a third device is not
            # accepted (it waits in the backlog) ...
            idle = [socket.create_connection(("127.0.0.1", port2)) for _ in range(2)]
            deadline = time.time() + 5
            while time.time() < deadline and eg2.metrics().get("enrollgate_est_connections") != 2:
                time.sleep(0.1)
            self.assertEqual(eg2.metrics()["enrollgate_est_connections"], 2)
            status, _, _ = self.curl(url, "--max-time", "2")
            self.assertEqual(status, 0)
            self.assertTrue([r for r in eg2.log_records() if "not accepting more" in r.get("msg", "")])
            # ... until one of them closes; then it is served
            idle.pop().close()
            self.assertEqual(self.curl(url)[0], 200)
            self.assertTrue([r for r in eg2.log_records() if "accepting device connections again" in r.get("msg", "")])
        finally:
            for s in idle:
                s.close()
            eg2.stop()

    def test_upstream_modes(self):
        body = self.csr("modes", "-algorithm", "ED25519")
        try:
            self.ca.mode("retry", retry_after=7)
            status, head, _ = self.curl(self.url("", "simpleenroll"), body=body)
            self.assertEqual(status, 202, head)
            self.assertIn("retry-after: 7", head.lower())
            self.ca.mode("junk")
            status, head, _ = self.curl(self.url("", "simpleenroll"), body=body)
            self.assertEqual(status, 502, head)
            self.ca.mode("untyped")  # the device gets the media type RFC 7030 gives the answer
            status, head, _ = self.curl(self.url("", "simpleenroll"), body=body)
            self.assertEqual(status, 200, head)
            self.assertIn("content-type: application/pkcs7-mime; smime-type=certs-only", head.lower())
            before = len(self.ca.requests())
            self.ca.mode("cutoff")  # the answer breaks off: 502, and the request is not sent again
            status, head, out = self.curl(self.url("", "simpleenroll"), body=body)
            self.assertEqual(status, 502, head)
            self.assertIn(b"not a PKCS#7", out)  # policies.errors est_upstream_bad_answer
            self.assertEqual(len(self.ca.requests()), before + 1)
            self.assertEqual(self.audit(lambda r: r.get("op") == "simpleenroll")[-1]["result"], "upstream-broken")
            self.ca.mode("fail")
            status, _, _ = self.curl(self.url("", "simpleenroll"), body=body)
            self.assertEqual(status, 500)  # the CA's own refusal, relayed
            self.ca.mode("silent")
            t0 = time.time()
            status, head, out = self.curl(self.url("", "simpleenroll"), body=body)
            self.assertEqual(status, 503, head)  # response timeout 3 s, one upstream
            self.assertLess(time.time() - t0, 10)
            self.assertIn("retry-after: 42", head.lower())
            self.assertIn(b"did not answer in time", out)  # policies.errors est_upstream_timeout
            self.assertEqual(self.audit(lambda r: r.get("op") == "simpleenroll")[-1]["result"], "upstream-timeout")
        finally:
            self.ca.mode("ok")

    def test_reload_changes_the_decision(self):
        body = self.csr("gw2.corp", "-algorithm", "ED25519", cn="gw2.corp.example.net")
        status, _, _ = self.curl(self.url("VPN", "simpleenroll"), body=body)
        self.assertEqual(status, 400)
        pid, gen = self.eg.proc.pid, self.eg.status()["generation"]
        self.write_est(vpn_domain='"vpn.example.com", "corp.example.net"')
        self.eg.reload()
        try:
            st = self.eg.status()
            self.assertEqual((st["pid"], st["generation"]), (pid, gen + 1))
            status, head, _ = self.curl(self.url("VPN", "simpleenroll"), body=body)
            self.assertEqual(status, 200, head)
        finally:
            self.write_est()
            self.eg.reload()

    def test_test_upstream_command(self):
        eg = os.environ.get("EG_BIN", "build/enrollgate")
        r = run(eg, "test-upstream", "-c", self.eg.conf, "VPN")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("CN=enrollgate-appliance", r.stdout)  # the identity used
        fp = run("openssl", "x509", "-in", os.path.join(self.d, "ca.pem"), "-noout", "-fingerprint", "-sha256")
        self.assertIn(fp.stdout.strip().split("=", 1)[1], r.stdout)  # the CA chain, with fingerprints
        self.assertIn("OK: 1 of 1 upstream working", r.stdout)
        r = run(eg, "test-upstream", "-c", self.eg.conf, "fail")  # a dead first upstream, a live second
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("FAILED: connection", r.stdout)
        self.assertIn("OK: 1 of 2 upstreams working", r.stdout)
        r = run(eg, "test-upstream", "-c", self.eg.conf, "down")
        self.assertEqual(r.returncode, 1, r.stdout)
        r = run(eg, "test-upstream", "-c", self.eg.conf, "nosuch")
        self.assertEqual(r.returncode, 1)
        self.assertIn('no label "nosuch"', r.stdout)

    def test_pkcs12_identity_after_sighup(self):
        # the appliance identity as a PKCS#12 keystore (one password for store and key), switched to
        # with SIGHUP: same process, and the CA sees the same identity
        pid, gen = self.eg.proc.pid, self.eg.status()["generation"]
        self.write_est(identity='{ pkcs12 = "%s/appliance.p12", password_file = "%s/appliance.pass" }' % (self.d, self.d))
        os.kill(pid, signal.SIGHUP)
        try:
            deadline = time.time() + 10
            while self.eg.status()["generation"] == gen and time.time() < deadline:
                time.sleep(0.05)
            st = self.eg.status()
            self.assertEqual((st["pid"], st["generation"], st["last_reload"]), (pid, gen + 1, "ok"))
            status, head, _ = self.curl(self.url("", "simpleenroll"), body=self.csr("p12", "-algorithm", "ED25519"))
            self.assertEqual(status, 200, head)
            self.assertIn("enrollgate-appliance", self.ca.requests()[-1]["client_cert_subject"])
        finally:
            self.write_est()
            self.eg.reload()

    def test_serverkeygen_relayed(self):
        # RFC 7030 4.4: the CA makes the key; enrollgate checks the request like an enrollment and
        # relays the CA's multipart answer (the key and its certificate) as it is
        status, head, out = self.curl(self.url("", "serverkeygen"), body=self.csr("skg", "-algorithm", "ED25519"))
        self.assertEqual(status, 200, head)
        ctype = [l.split(":", 1)[1].strip() for l in head.splitlines() if l.lower().startswith("content-type:")][0]
        self.assertTrue(ctype.startswith("multipart/mixed; boundary="), ctype)
        boundary = ctype.split("boundary=", 1)[1].encode()
        parts = [p for p in out.split(b"--" + boundary) if p.strip() not in (b"", b"--")]
        self.assertEqual(len(parts), 2)
        heads_bodies = [p.strip().split(b"\r\n\r\n", 1) for p in parts]
        self.assertIn(b"application/pkcs8", heads_bodies[0][0])
        self.assertIn(b"smime-type=certs-only", heads_bodies[1][0])
        key = os.path.join(self.d, "skg-server.key")
        r = subprocess.run(["openssl", "pkey", "-inform", "DER", "-out", key], input=base64.b64decode(heads_bodies[0][1]),
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        pem = self.issued_cert(heads_bodies[1][1])
        self.assertEqual(run("openssl", "verify", "-CAfile", os.path.join(self.d, "ca.pem"), pem).returncode, 0)
        # the certificate is for the key the CA made, not for the CSR's
        pub_cert = run("openssl", "x509", "-in", pem, "-noout", "-pubkey").stdout
        pub_key = run("openssl", "pkey", "-in", key, "-pubout").stdout
        self.assertEqual(pub_cert, pub_key)
        self.assertIn("skg.example.com", run("openssl", "x509", "-in", pem, "-noout", "-subject").stdout)
        rec = self.audit(lambda r: r.get("op") == "serverkeygen")[-1]
        self.assertEqual(rec["result"], "issued")
        self.assertNotIn("PRIVATE", self.eg.log())  # the key passes through, never into a log

    def test_content_transfer_encoding_header(self):
        # RFC 8951: a request may say Content-Transfer-Encoding: base64 (or nothing)
        status, head, _ = self.curl(self.url("", "simpleenroll"), "-H", "Content-Transfer-Encoding: base64",
                                    body=self.csr("cte", "-algorithm", "ED25519"))
        self.assertEqual(status, 200, head)
        self.assertIn("content-transfer-encoding: base64", head.lower())

    def test_passwords_only_as_hashes(self):
        eg_bin = os.environ.get("EG_BIN", "build/enrollgate")
        r = subprocess.run([eg_bin, "hash-password"], input="correct horse\n", capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        h = r.stdout.strip()
        algo, it, salt, want = h.split("$")
        self.assertEqual(algo, "pbkdf2-sha256")
        self.assertGreaterEqual(int(it), 10000)
        got = hashlib.pbkdf2_hmac("sha256", b"correct horse", base64.b64decode(salt), int(it))
        self.assertEqual(base64.b64encode(got).decode(), want)  # the hash of what was typed, and not the password
        self.assertNotIn("correct horse", h)
        conf = tempfile.mkdtemp(prefix="eg-est-users-")
        try:
            shutil.copytree(self.eg.conf, conf, dirs_exist_ok=True)
            with open(os.path.join(conf, "est.lua"), "w") as f:
                f.write(self.est_text().replace('users = { ["dev-basic"] = "', 'users = { ["dev-basic"] = "s3cret", x = "', 1))
            r = run(eg_bin, "check", "-c", conf)
            self.assertEqual(r.returncode, 1)
            self.assertIn("expected a password hash from `enrollgate hash-password` (never the password)", r.stdout + r.stderr)
        finally:
            shutil.rmtree(conf, ignore_errors=True)

    def test_wrong_identity_password_is_a_check_error(self):
        bad = os.path.join(self.d, "bad.pass")
        with open(bad, "w") as f:
            f.write("not-the-password\n")
        conf = tempfile.mkdtemp(prefix="eg-est-check-")
        try:
            shutil.copytree(self.eg.conf, conf, dirs_exist_ok=True)
            ident = '{ cert = "%s/appliance.pem", key = "%s/appliance.key", passphrase_file = "%s" }' % (self.d, self.d, bad)
            with open(os.path.join(conf, "est.lua"), "w") as f:
                f.write(self.est_text(vpn_domain='"v"', identity=ident, password="x"))
            r = run(os.environ.get("EG_BIN", "build/enrollgate"), "check", "-c", conf)
            self.assertEqual(r.returncode, 1)
            self.assertIn("est.lua", r.stdout + r.stderr)
            self.assertIn("wrong passphrase", r.stdout + r.stderr)
            p12 = '{ pkcs12 = "%s/appliance.p12", password_file = "%s" }' % (self.d, bad)
            with open(os.path.join(conf, "est.lua"), "w") as f:
                f.write(self.est_text(vpn_domain='"v"', identity=p12, password="x"))
            r = run(os.environ.get("EG_BIN", "build/enrollgate"), "check", "-c", conf)
            self.assertEqual(r.returncode, 1)
            self.assertIn("wrong password", r.stdout + r.stderr)
        finally:
            shutil.rmtree(conf, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
