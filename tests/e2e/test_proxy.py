"""End-to-end tests of the forward proxy: real daemon, real curl/openssl, origins on 127.0.0.1."""
import calendar
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from harness import Daemon, Origin, free_port, make_tls_cert, proxy_get, random_bytes, raw, read_all, status_of

CURL = ["curl", "-sS", "--noproxy", "", "--max-time", "10"]


class ProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="eg-origin-")
        cls.cert, cls.key = make_tls_cert(cls.tmp)
        cls.origin = Origin()
        cls.tls_origin = Origin(cls.cert, cls.key)
        cls.eg = Daemon()
        cls.eg.start()
        cls.proxy = "http://127.0.0.1:%d" % cls.eg.port

    @classmethod
    def tearDownClass(cls):
        cls.eg.stop()
        cls.origin.stop()
        cls.tls_origin.stop()

    def url(self, path, host="localhost"):
        return "http://%s:%d%s" % (host, self.origin.port, path)

    def curl(self, *args):
        return subprocess.run(CURL + ["-x", self.proxy] + list(args), capture_output=True, text=True)

    def access(self, pred):
        return [r for r in self.eg.log_records() if r.get("event") == "access" and pred(r)]

    # --- forwarding ---

    def test_get_allowed(self):
        r = self.curl("-o", "-", "-w", "\n%{http_code}", self.url("/small"))
        body, code = r.stdout.rsplit("\n", 1)
        self.assertEqual(code, "200")
        self.assertEqual(body, "x" * 100)

    def test_query_without_path_gets_slash(self):
        # RFC 9112 §3.2.1: "http://h?q" goes upstream as "GET /?q"
        req = ("GET http://localhost:%d?x=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
               % self.origin.port).encode()
        out = raw(self.eg.port, req)
        self.assertIn(b"HTTP/1.1 200", out)
        self.assertTrue(out.endswith(b"path=/?x=1"), out[-80:])

    def test_via_added_hop_by_hop_removed(self):
        r = self.curl("-H", "Proxy-Authorization: Basic c2VjcmV0", "-H", "Connection: X-Drop, keep-alive",
                      "-H", "X-Drop: 1", "-H", "Keep-Alive: timeout=5", self.url("/headers"))
        h = json.loads(r.stdout)
        self.assertIn("enrollgate", h.get("via", ""))
        for gone in ("proxy-authorization", "x-drop", "keep-alive", "proxy-connection"):
            self.assertNotIn(gone, h)
        self.assertEqual(h["host"], "localhost:%d" % self.origin.port)

    def test_keepalive_both_sides(self):
        req = ("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % self.url("/small")).encode()
        last = ("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % self.url("/small")).encode()
        out = raw(self.eg.port, req + req + last)  # pipelined on one connection
        self.assertEqual(out.count(b"HTTP/1.1 200"), 3, out[:300])
        self.assertEqual(out.count(b"x" * 100), 3)

    def test_post_content_length_and_chunked(self):
        data = os.urandom(300000)
        path = os.path.join(self.tmp, "body.bin")
        with open(path, "wb") as f:
            f.write(data)
        out = os.path.join(self.tmp, "out.bin")
        r = self.curl("--data-binary", "@" + path, "-o", out, "-w", "%{http_code}", self.url("/echo"))
        self.assertEqual(r.stdout, "200")
        with open(out, "rb") as f:
            self.assertEqual(f.read(), data)
        r = self.curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@" + path, "-o", out, "-w", "%{http_code}",
                      self.url("/echo"))
        self.assertEqual(r.stdout, "200")
        with open(out, "rb") as f:
            self.assertEqual(f.read(), data)

    def test_chunked_response_and_big_body(self):
        r = self.curl(self.url("/chunked"))
        self.assertEqual(r.stdout, "hello chunked world")
        r = self.curl("-o", "/dev/null", "-w", "%{size_download}", self.url("/big"))
        self.assertEqual(r.stdout, str(4 * 1024 * 1024))

    def test_half_closed_client_gets_its_answer(self):
        # request, then shutdown(SHUT_WR) at once (printf ... | nc -N): the answer still comes, then
        # the end (the proxy closes; it says "Connection: close" when it saw the client's end of file
        # before the answer's head, which an origin connection taken from the pool can beat)
        for path in ("/small", "/slow"):
            s = socket.create_connection(("127.0.0.1", self.eg.port), timeout=5)
            try:
                s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % self.url(path)).encode())
                s.shutdown(socket.SHUT_WR)
                out = read_all(s)  # until the proxy closes; a timeout raises
            finally:
                s.close()
            self.assertEqual(status_of(out), 200, out[:200])
            self.assertTrue(out.endswith(b"x" * 100 if path == "/small" else b"slow"))
        # the answer to a client whose end of file came first says so
        out = raw(self.eg.port, ("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % self.url("/slow")).encode(),
                  half_close=True)
        self.assertIn(b"connection: close", out.lower())

    def test_pipelined_requests_then_half_close(self):
        req = ("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % self.url("/small")).encode()
        out = raw(self.eg.port, req + req.replace(b"/small", b"/slow"), half_close=True)
        self.assertEqual(out.count(b"HTTP/1.1 200"), 2, out[:400])
        self.assertTrue(out.endswith(b"slow"))

    def test_head_request(self):
        r = self.curl("-I", self.url("/small"))
        self.assertIn("200", r.stdout.splitlines()[0])

    # --- CONNECT ---

    def test_connect_tunnel_tls_passthrough(self):
        r = self.curl("--cacert", self.cert, "-w", "\n%{http_code}", "https://localhost:%d/small" % self.tls_origin.port)
        body, code = r.stdout.rsplit("\n", 1)
        self.assertEqual(code, "200", r.stderr)
        self.assertEqual(body, "x" * 100)
        recs = self.access(lambda r: r["method"] == "CONNECT" and r["port"] == self.tls_origin.port)
        self.assertTrue(recs)
        self.assertEqual(recs[-1]["sni"], "localhost")
        self.assertGreater(recs[-1]["bytes_out"], 100)

    def test_connect_sni_mismatch_refused(self):
        # CONNECT to localhost but a ClientHello naming another host: the tunnel is closed
        p = subprocess.run(["openssl", "s_client", "-proxy", "127.0.0.1:%d" % self.eg.port,
                            "-connect", "localhost:%d" % self.tls_origin.port, "-servername", "evil.example.com",
                            "-CAfile", self.cert], input="", capture_output=True, text=True, timeout=20)
        self.assertIn("no peer certificate available", p.stdout)
        recs = self.access(lambda r: r.get("sni") == "evil.example.com")
        self.assertTrue(recs, self.eg.log()[-2000:])
        self.assertEqual(recs[-1]["verdict"], "deny")
        self.assertIn("does not match", recs[-1]["reason"])

    def test_connect_denied_port(self):
        out = raw(self.eg.port, b"CONNECT localhost:22 HTTP/1.1\r\nHost: localhost:22\r\n\r\n")
        self.assertEqual(status_of(out), 403)
        self.assertIn(b"port 22 is not allowed", out)
        # the log names the rule that names the host but not the port
        recs = self.access(lambda r: r.get("port") == 22 and r.get("method") == "CONNECT")
        self.assertTrue(recs, self.eg.log()[-2000:])
        self.assertEqual(recs[-1]["rule"], "local-origin")

    # --- policy decisions ---

    def test_denied_host_403_with_reason_and_log(self):
        code, body = proxy_get(self.eg.port, "http://evil.invalid/")
        self.assertEqual(code, 403)
        self.assertIn(b"not in the allowlist", body)
        self.assertEqual(body.count(b"\n"), 1)
        recs = self.access(lambda r: r.get("host") == "evil.invalid")
        self.assertEqual(recs[-1]["verdict"], "deny")
        self.assertEqual(recs[-1]["stage"], "allowlist")

    def test_hook_denies_path(self):
        code, body = proxy_get(self.eg.port, self.url("/forbidden/x"))
        self.assertEqual(code, 403)
        self.assertIn(b"path forbidden by test hook", body)

    def test_unknown_origin_form_is_404(self):
        out = raw(self.eg.port, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(status_of(out), 404)

    def test_upstream_refused_502(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        code, _ = proxy_get(self.eg.port, "http://localhost:%d/" % dead)
        self.assertEqual(code, 502)

    # --- hostile input ---

    def test_malformed_request_line(self):
        self.assertEqual(status_of(raw(self.eg.port, b"GARBAGE\x01\r\n\r\n")), 400)
        self.assertEqual(status_of(raw(self.eg.port, b"GET  http://localhost/ HTTP/1.1\r\nHost: a\r\n\r\n")), 400)

    def test_cl_and_te_together(self):
        req = ("POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
               "0\r\n\r\n" % self.url("/echo")).encode()
        out = raw(self.eg.port, req)
        self.assertEqual(status_of(out), 400)
        self.assertIn(b"both Content-Length and Transfer-Encoding", out)

    def test_oversized_header_431(self):
        big = b"GET " + self.url("/small").encode() + b" HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        self.assertEqual(status_of(raw(self.eg.port, big)), 431)

    def test_slow_header_408(self):
        t0 = time.time()
        out = raw(self.eg.port, b"GET http://localhost/ HTTP/1.1\r\nHost: x\r\n", timeout=8)
        self.assertEqual(status_of(out), 408)
        self.assertLess(time.time() - t0, 6)  # header_timeout is 2 s in the test configuration

    def test_http2_preface_refused(self):
        out = raw(self.eg.port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        self.assertEqual(status_of(out), 505)

    def test_upgrade_refused(self):
        out = raw(self.eg.port, ("GET %s HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                                 % self.url("/")).encode())
        self.assertEqual(status_of(out), 501)

    def test_https_absolute_form_refused(self):
        out = raw(self.eg.port, b"GET https://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertEqual(status_of(out), 400)

    def test_garbage_does_not_crash(self):
        for junk in (b"\x16\x03\x01\x00\x05hello", b"\r\n\r\n", b"GET http://[::1 HTTP/1.1\r\n\r\n",
                     b"CONNECT :0 HTTP/1.1\r\nHost: x\r\n\r\n", b"G" * 70000):
            raw(self.eg.port, junk, timeout=3)
        self.assertEqual(self.eg.admin("/healthz")[0], 200)

    def test_metrics_and_status(self):
        proxy_get(self.eg.port, self.url("/small"))
        m = self.eg.metrics()
        self.assertGreaterEqual(m['enrollgate_requests_total{verdict="allow"}'], 1)
        self.assertIn("enrollgate_lua_memory_bytes", m)
        st = self.eg.status()
        self.assertEqual(st["pid"], self.eg.proc.pid)
        self.assertEqual(st["last_reload"], "ok")
        self.assertEqual(len(st["bundle_sha256"]), 64)
        loaded = calendar.timegm(time.strptime(st["loaded_at"], "%Y-%m-%dT%H:%M:%SZ"))  # ISO 8601, UTC
        self.assertLessEqual(abs(time.time() - loaded), 600)
        self.assertEqual(m["enrollgate_policy_generation"], st["generation"])
        self.assertEqual(m['enrollgate_reloads_total{result="ok"}'], 0)
        # one connection held open: the gauge sees it
        s = socket.create_connection(("127.0.0.1", self.eg.port))
        try:
            time.sleep(0.2)
            self.assertGreaterEqual(self.eg.metrics()["enrollgate_active_connections"], 1)
        finally:
            s.close()

    def test_origin_connections_shared_between_clients(self):
        # clients that say Connection: close leave their clean idle upstream to the next client
        origin = Origin()
        try:
            base = "http://localhost:%d" % origin.port
            for _ in range(3):
                self.assertEqual(proxy_get(self.eg.port, base + "/small")[0], 200)
            self.assertEqual(len(origin.peers), 3)
            self.assertEqual(len(set(origin.peers)), 1, origin.peers)  # one TCP connection for the three
            # a request with Authorization: the connection it used is not handed on (a login may be
            # bound to it); the next client gets a new one, which is shared again
            self.assertEqual(proxy_get(self.eg.port, base + "/small", {"Authorization": "Basic eDp5"})[0], 200)
            for _ in range(2):
                self.assertEqual(proxy_get(self.eg.port, base + "/small")[0], 200)
            p = origin.peers
            self.assertEqual(p[3], p[0])
            self.assertNotEqual(p[4], p[3], p)
            self.assertEqual(p[5], p[4], p)
            # a POST does not take a shared connection (it could not be sent again if that one
            # turned out closed): a new one
            post = ("POST %s/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
                    % base).encode()
            self.assertEqual(status_of(raw(self.eg.port, post)), 200)
            self.assertNotIn(origin.peers[6], p[:6])
            # another origin port is another key: never the same connection
            other = Origin()
            try:
                self.assertEqual(proxy_get(self.eg.port, "http://localhost:%d/small" % other.port)[0], 200)
                self.assertNotIn(other.peers[0], p)
            finally:
                other.stop()
        finally:
            origin.stop()

    def test_memory_given_back_when_idle(self):
        # many clients at once leave request states for reuse; a second after the last
        # connection closed they are freed (and the heap trimmed)
        url = self.url("/slow")  # 0.3 s at the origin: the sixteen requests surely overlap
        req = ("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % url).encode()
        socks = [socket.create_connection(("127.0.0.1", self.eg.port)) for _ in range(16)]
        try:
            for s in socks:
                s.sendall(req)
            for s in socks:
                s.settimeout(5)
                got = b""
                while not got.endswith(b"slow"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                self.assertIn(b"HTTP/1.1 200", got)
            # sixteen requests were in flight together: their states wait on the free list
            self.assertGreaterEqual(self.eg.status()["cached_request_states"], 16)
            self.assertGreaterEqual(self.eg.status()["idle_origin_connections"], 0)
        finally:
            for s in socks:
                s.close()
        deadline = time.time() + 10
        while time.time() < deadline and self.eg.status()["cached_request_states"] > 0:
            time.sleep(0.2)
        self.assertEqual(self.eg.status()["cached_request_states"], 0)

    def test_origin_closing_kept_alive_connections_fails_no_request(self):
        # the origin closes every connection after its answer without saying so: a pooled or
        # kept-alive connection may be found closed as a request goes out; a GET is sent again
        origin = Origin()
        try:
            url = "http://localhost:%d/then-close" % origin.port
            for _ in range(20):
                self.assertEqual(proxy_get(self.eg.port, url), (200, b"then-close"))
            req = ("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % url).encode()
            last = ("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % url).encode()
            out = raw(self.eg.port, req * 5 + last)  # one client, kept alive
            self.assertEqual(out.count(b"HTTP/1.1 200"), 6, out[:400])
            self.assertEqual(len(origin.peers), 26)
            self.assertEqual(len(set(origin.peers)), 26)  # every request had a connection of its own
        finally:
            origin.stop()


class LogLevelTest(unittest.TestCase):
    def test_level_warn_keeps_only_warnings(self):
        # log.level = "warn": a 200's access record (info) is left out, a 502's (warn) is written
        origin = Origin()
        eg = Daemon(settings='return { log = { level = "warn", access = true } }')
        eg.start()
        try:
            self.assertEqual(proxy_get(eg.port, "http://localhost:%d/small" % origin.port)[0], 200)
            self.assertEqual(proxy_get(eg.port, "http://localhost:%d/small" % free_port())[0], 502)
            recs = [r for r in eg.log_records() if r.get("event") == "access"]
            self.assertEqual([r["status"] for r in recs], [502])
            # nothing below warn but the start record
            self.assertFalse([r for r in eg.log_records() if r.get("level") in ("debug", "info") and r.get("event") != "start"])
        finally:
            eg.stop()
            origin.stop()


class StreamingTest(unittest.TestCase):
    """Bodies are streamed both ways: the origin sees the first part of a request body while the
    client still holds the rest, and the client sees the first part of the answer while the origin
    still holds the rest (neither is buffered whole)."""

    def test_bodies_stream_both_ways(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        eg = Daemon()
        eg.start()
        try:
            c = socket.create_connection(("127.0.0.1", eg.port), timeout=10)
            c.sendall(b"POST http://localhost:%d/up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\n\r\n"
                      % srv.getsockname()[1] + b"a" * 50000)
            srv.settimeout(10)
            o, _ = srv.accept()
            o.settimeout(10)
            got = b""
            while got.count(b"a") < 50000:
                got += o.recv(65536)
            self.assertIn(b"\r\n\r\n", got)  # the first quarter arrived before the client sent the rest
            c.sendall(b"b" * 150000)
            while got.count(b"b") < 150000:
                got += o.recv(65536)
            o.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"c" * 50000)
            back = b""
            while back.count(b"c") < 50000:
                back += c.recv(65536)
            self.assertTrue(back.startswith(b"HTTP/1.1 200"))  # the first quarter of the answer, before the rest
            o.sendall(b"d" * 150000)
            while back.count(b"d") < 150000:
                back += c.recv(65536)
            o.close()
            c.close()
        finally:
            eg.stop()
            srv.close()


class ProtocolRouteTest(unittest.TestCase):
    """Origin-form requests routed to protocol modules: EST and CMP name their own listeners (421),
    a protocol without a handler is 501, a path without a route 404."""

    def test_routed_paths(self):
        eg = Daemon(policy="""local R = require("protocols.registry")
return { api_version = 1,
  allowlist = { { name = "x", hosts = { "example.com" }, ports = { 443 } } },
  routes = R.routes{ est = true, cmp = { "/ejbca/publicweb/cmp/" }, scep = true } }""")
        eg.start()
        try:
            for path, code, text in (("/.well-known/est/cacerts", 421, b"served by the EST listener (est.lua"),
                                     ("/ejbca/publicweb/cmp/alias", 421, b"served by the CMP listener (cmp.lua)"),
                                     ("/cgi-bin/pkiclient.exe?operation=GetCACaps", 501, b"'scep' has no handler"),
                                     ("/elsewhere", 404, b"no such endpoint")):
                out = raw(eg.port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
                self.assertEqual(status_of(out), code, out[:200])
                self.assertIn(text, out)
        finally:
            eg.stop()


class AddressPolicyTest(unittest.TestCase):
    """A host rule that does not name loopback: the resolved address is refused (SSRF / rebinding)."""

    def test_resolved_internal_address_refused(self):
        origin = Origin()
        eg = Daemon(policy="""return { api_version = 1,
          allowlist = { { name = "names-only", hosts = { "localhost" }, ports = { "1-65535" } } } }""")
        eg.start()
        try:
            code, body = proxy_get(eg.port, "http://localhost:%d/small" % origin.port)
            self.assertEqual(code, 403)
            self.assertIn(b"loopback", body)
            self.assertEqual(origin.requests, [])
        finally:
            eg.stop()
            origin.stop()


SETTINGS = """return {
  log = { level = "info", access = true },
  limits = { header_timeout = 2, response_timeout = 1, max_connections = %d, drain_timeout = 1 },
}
"""


TIMEOUTS = """return {
  log = { level = "info", access = true },
  limits = { idle_timeout = 1, tunnel_idle_timeout = 2, connect_timeout = 1, drain_timeout = 1 },
}
"""


def proc_cpu_seconds(pid):
    """utime + stime of a process, in seconds (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LimitsTest(unittest.TestCase):
    def setUp(self):
        self.origin = Origin()

    def tearDown(self):
        self.origin.stop()

    def test_response_timeout_504(self):
        eg = Daemon(settings=SETTINGS % 100)
        eg.start()
        try:
            t0 = time.time()
            code, body = proxy_get(eg.port, "http://localhost:%d/silent" % self.origin.port, timeout=10)
            self.assertEqual(code, 504)
            self.assertIn(b"timed out", body)
            self.assertLess(time.time() - t0, 5)
        finally:
            eg.stop()

    def test_slow_answer_to_a_post_is_not_cut_by_idle_timeout(self):
        eg = Daemon(settings="""return { limits = { idle_timeout = 0.2, drain_timeout = 1 } }""")
        eg.start()
        try:
            out = raw(eg.port, b"POST http://localhost:%d/slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n"
                      b"Connection: close\r\n\r\nabc" % self.origin.port)
            self.assertEqual(status_of(out), 200, out[:200])
        finally:
            eg.stop()

    def test_max_connections_503(self):
        eg = Daemon(settings=SETTINGS % 2)
        eg.start()
        try:
            held = [socket.create_connection(("127.0.0.1", eg.port)) for _ in range(2)]
            time.sleep(0.2)
            out = raw(eg.port, b"")  # the answer comes at accept, before any request
            self.assertEqual(status_of(out), 503)
            self.assertGreaterEqual(eg.metrics()["enrollgate_connections_refused_total"], 1)
            self.assertTrue([r for r in eg.log_records() if r.get("event") == "refused"
                             and "max_connections 2" in r.get("msg", "")], eg.log()[-500:])
            for s in held:
                s.close()
        finally:
            eg.stop()

    def test_out_of_descriptors_pauses_accepting(self):
        # 64 descriptors where max_connections 1000 would need thousands: a warning at start; the
        # connections past the limit wait in the backlog while accepting pauses (no busy loop on
        # EMFILE), and once descriptors are free again the proxy answers as before.
        eg = Daemon(settings=SETTINGS % 1000)
        eg.start(nofile=64)
        try:
            self.assertIn("file descriptors, the limit is 64", eg.log())
            held = [socket.create_connection(("127.0.0.1", eg.port)) for _ in range(80)]
            time.sleep(0.3)
            cpu0 = proc_cpu_seconds(eg.proc.pid)
            time.sleep(1.0)
            spent = proc_cpu_seconds(eg.proc.pid) - cpu0
            self.assertLess(spent, 0.5, "accept on EMFILE spun: %.2f s of CPU in 1 s" % spent)
            self.assertIn("not accepting for 100 ms", eg.log())
            for s in held:
                s.close()
            time.sleep(0.3)
            code, body = proxy_get(eg.port, "http://localhost:%d/small" % self.origin.port)
            self.assertEqual(code, 200)
            self.assertGreaterEqual(eg.metrics()["enrollgate_accept_pauses_total"], 1)
        finally:
            eg.stop()

    def closed_within(self, sock, seconds):
        """Seconds until the peer closes sock (reading and discarding), or None after `seconds`."""
        t0 = time.time()
        sock.settimeout(0.2)
        while time.time() - t0 < seconds:
            try:
                if not sock.recv(65536):
                    return time.time() - t0
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError):
                return time.time() - t0
        return None

    def test_idle_keepalive_client_closed(self):
        eg = Daemon(settings=TIMEOUTS)
        eg.start()
        try:
            s = socket.create_connection(("127.0.0.1", eg.port), timeout=5)
            s.sendall(("GET http://localhost:%d/small HTTP/1.1\r\nHost: localhost\r\n\r\n" % self.origin.port).encode())
            got = b""
            while not got.endswith(b"x" * 100):
                got += s.recv(65536)
            self.assertEqual(status_of(got), 200)
            waited = self.closed_within(s, 8)  # idle_timeout = 1
            self.assertIsNotNone(waited, "keep-alive connection still open after 8 s idle")
            self.assertGreater(waited, 0.5)
            s.close()
        finally:
            eg.stop()

    def test_idle_tunnel_closed(self):
        tmp = tempfile.mkdtemp(prefix="eg-tls-")
        cert, key = make_tls_cert(tmp)
        tls_origin = Origin(cert, key)
        eg = Daemon(settings=TIMEOUTS)
        eg.start()
        try:
            s = socket.create_connection(("127.0.0.1", eg.port), timeout=5)
            s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % tls_origin.port)
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1)
            self.assertEqual(status_of(head), 200)
            ctx = ssl.create_default_context(cafile=cert)
            t = ctx.wrap_socket(s, server_hostname="localhost")  # a real handshake through the tunnel
            t.sendall(b"GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n")
            got = b""
            while not got.endswith(b"x" * 100):
                got += t.recv(65536)
            waited = self.closed_within(t, 8)  # tunnel_idle_timeout = 2: no byte either way
            self.assertIsNotNone(waited, "idle tunnel still open after 8 s")
            self.assertGreater(waited, 1.5)
            t.close()
            recs = [r for r in eg.log_records() if r.get("event") == "access" and r.get("method") == "CONNECT"]
            self.assertTrue(recs, eg.log()[-1500:])
        finally:
            eg.stop()
            tls_origin.stop()

    def test_upstream_connect_timeout_504(self):
        # a listener whose accept queue is full and never drained: the kernel drops further SYNs,
        # so the proxy's connect hangs until connect_timeout
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        port = lst.getsockname()[1]
        fillers = []
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        time.sleep(0.3)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", port))
            self.skipTest("this kernel accepts SYNs beyond a full accept queue")
        except OSError:
            pass
        finally:
            probe.close()
        eg = Daemon(settings=TIMEOUTS)
        eg.start()
        try:
            t0 = time.time()
            code, body = proxy_get(eg.port, "http://localhost:%d/small" % port, timeout=10)
            self.assertEqual(code, 504, body)
            self.assertIn(b"connect", body.lower())
            self.assertLess(time.time() - t0, 6)
        finally:
            eg.stop()
            for c in fillers:
                c.close()
            lst.close()

    def test_ipv6_listener(self):
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            self.skipTest("no IPv6 loopback here")
        eg = Daemon()
        eg.start()
        eg.stop_keep = True
        try:
            eg.proc.terminate()
            eg.proc.wait(10)
            port6 = eg.port + 0
            import subprocess as sp
            from harness import EG_BIN
            p = sp.Popen([EG_BIN, "run", "-c", eg.conf, "--listen", "127.0.0.1:%d" % eg.port, "--listen", "[::1]:%d" % port6,
                          "--admin", "127.0.0.1:%d" % eg.admin_port], stdout=sp.DEVNULL, stderr=sp.DEVNULL)
            try:
                deadline = time.time() + 5
                while time.time() < deadline:
                    try:
                        socket.create_connection(("::1", port6), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.05)
                s = socket.create_connection(("::1", port6), timeout=5)
                s.sendall(b"GET http://localhost:%d/small HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % self.origin.port)
                out = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
                s.close()
                self.assertEqual(status_of(out), 200)
            finally:
                p.terminate()
                p.wait(10)
        finally:
            eg.stop()


class EchoServer:
    """TCP echo on 127.0.0.1: echoes every byte, and after the client's end (EOF) sends
    "END <bytes received>" and closes, so a test sees that a half-close crossed the tunnel."""

    def __init__(self):
        self.lst = socket.socket()
        self.lst.bind(("127.0.0.1", 0))
        self.lst.listen(8)
        self.port = self.lst.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.lst.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn):
        n = 0
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                n += len(data)
                conn.sendall(data)
            conn.sendall(b"END %d" % n)

    def stop(self):
        self.lst.close()


RELAY_SETTINGS = """return {
  log = { level = "info", access = true },
  relay = { splice = %s },
  limits = { drain_timeout = 1 },
}
"""


class TunnelRelayTest(unittest.TestCase):
    """Bytes through a CONNECT tunnel, both relay paths: splice(2) and the buffered one."""

    def setUp(self):
        self.echo = EchoServer()
        self.policy = """return { api_version = 1,
          allowlist = { { name = "echo", hosts = { "127.0.0.1" }, cidrs = { "127.0.0.1/32" }, ports = { %d } } } }
        """ % self.echo.port

    def tearDown(self):
        self.echo.stop()

    def tunnel(self, eg):
        s = socket.create_connection(("127.0.0.1", eg.port), timeout=10)
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % self.echo.port)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        self.assertEqual(status_of(head), 200)
        return s

    def roundtrip(self, splice):
        eg = Daemon(policy=self.policy, settings=RELAY_SETTINGS % splice)
        eg.start()
        try:
            size = 8 * 1024 * 1024
            data = os.urandom(size)
            s = self.tunnel(eg)
            got = bytearray()

            def reader():
                time.sleep(0.5)  # the echo backs up meanwhile: back-pressure through the tunnel
                while True:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        return
                    got.extend(chunk)

            t = threading.Thread(target=reader)
            t.start()
            s.sendall(data[:1000])
            time.sleep(0.2)  # the tunnel is running and idle in between: the splice hand-over happens here
            s.sendall(data[1000:])
            s.shutdown(socket.SHUT_WR)  # half-close: the answer must still come back
            t.join(30)
            self.assertFalse(t.is_alive(), "no end of stream from the tunnel")
            s.close()
            self.assertEqual(len(got), size + len(b"END %d" % size))
            self.assertTrue(bytes(got[:size]) == data, "tunnel altered the bytes")
            self.assertEqual(bytes(got[size:]), b"END %d" % size)
            m = eg.metrics()
            deadline = time.time() + 5
            recs = []
            while time.time() < deadline and not recs:
                recs = [r for r in eg.log_records() if r.get("event") == "access" and r.get("method") == "CONNECT"]
                time.sleep(0.05)
            self.assertTrue(recs, eg.log()[-1500:])
            self.assertEqual(recs[-1]["bytes_in"], size)
            self.assertEqual(recs[-1]["bytes_out"], size + len(b"END %d" % size))
            return m["enrollgate_tunnels_spliced_total"]
        finally:
            eg.stop()

    def test_spliced_tunnel_relays_exactly_and_half_closes(self):
        self.assertEqual(self.roundtrip("true"), 1)

    def test_buffered_tunnel_relays_exactly_and_half_closes(self):
        self.assertEqual(self.roundtrip("false"), 0)

    def test_upstream_closing_first_ends_the_tunnel(self):
        eg = Daemon(policy=self.policy, settings=RELAY_SETTINGS % "true")
        eg.start()
        try:
            s = self.tunnel(eg)
            s.sendall(b"ping")
            self.assertEqual(s.recv(4), b"ping")
            time.sleep(0.2)
            s.shutdown(socket.SHUT_WR)
            rest = b""
            s.settimeout(5)
            while True:
                chunk = s.recv(100)
                if not chunk:
                    break
                rest += chunk
            self.assertEqual(rest, b"END 4")
            s.close()
            deadline = time.time() + 5
            while time.time() < deadline and eg.metrics()["enrollgate_active_tunnels"] != 0:
                time.sleep(0.05)
            self.assertEqual(eg.metrics()["enrollgate_active_tunnels"], 0)
        finally:
            eg.stop()


class BodyRelayTest(unittest.TestCase):
    """Large response bodies: spliced (relay.splice = true) and buffered, exact bytes, connection reuse,
    bodies that end with the connection, and bodies cut short by the origin."""

    def setUp(self):
        self.origin = Origin()

    def tearDown(self):
        self.origin.stop()

    def read_response(self, s, buf):
        """One response (Content-Length framed) from socket s; returns (status, body, rest of buf)."""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            self.assertTrue(chunk, "connection closed before the response head")
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        n = int([line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")][0])
        while len(buf) < n:
            chunk = s.recv(1 << 20)
            self.assertTrue(chunk, "connection closed after %d of %d body bytes" % (len(buf), n))
            buf += chunk
        return status_of(head), buf[:n], buf[n:]

    def reuse(self, splice):
        eg = Daemon(settings=RELAY_SETTINGS % splice)
        eg.start()
        try:
            n = 3 * 1024 * 1024 + 17
            s = socket.create_connection(("127.0.0.1", eg.port), timeout=10)
            s.sendall(b"GET http://localhost:%d/random/%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % (self.origin.port, n))
            time.sleep(0.3)  # the client does not read yet: the relay has to hold back
            code, body, rest = self.read_response(s, b"")
            self.assertEqual(code, 200)
            self.assertTrue(body == random_bytes(n), "body altered")
            # the same client connection carries the next request
            s.sendall(b"GET http://localhost:%d/small HTTP/1.1\r\nHost: localhost\r\n\r\n" % self.origin.port)
            code, body, rest = self.read_response(s, rest)
            self.assertEqual((code, body), (200, b"x" * 100))
            s.close()
            recs = [r for r in eg.log_records() if r.get("event") == "access" and "/random/" in r.get("target", "")]
            self.assertTrue(recs, eg.log()[-1500:])
            self.assertEqual(recs[-1]["status"], 200)
            self.assertEqual(recs[-1]["bytes_out"], n)
            return eg.metrics()["enrollgate_bodies_spliced_total"]
        finally:
            eg.stop()

    def test_spliced_body_exact_and_connection_reused(self):
        self.assertEqual(self.reuse("true"), 1)

    def test_buffered_body_exact_and_connection_reused(self):
        self.assertEqual(self.reuse("false"), 0)

    def test_body_until_close(self):
        eg = Daemon(settings=RELAY_SETTINGS % "true")
        eg.start()
        try:
            n = 2 * 1024 * 1024 + 3
            out = raw(eg.port, b"GET http://localhost:%d/until-close/%d HTTP/1.1\r\nHost: localhost\r\n\r\n"
                      % (self.origin.port, n), timeout=10)
            head, _, body = out.partition(b"\r\n\r\n")
            self.assertEqual(status_of(head), 200)
            self.assertEqual(len(body), n)
            self.assertTrue(body == random_bytes(n), "body altered")
            self.assertEqual(eg.metrics()["enrollgate_bodies_spliced_total"], 1)
        finally:
            eg.stop()

    def test_body_cut_short_closes_the_client(self):
        for splice in ("true", "false"):
            eg = Daemon(settings=RELAY_SETTINGS % splice)
            eg.start()
            try:
                n = 1024 * 1024
                out = raw(eg.port, b"GET http://localhost:%d/truncated/%d HTTP/1.1\r\nHost: localhost\r\n\r\n"
                          % (self.origin.port, n), timeout=10)
                head, _, body = out.partition(b"\r\n\r\n")
                self.assertEqual(status_of(head), 200)
                self.assertEqual(len(body), n // 5, splice)  # and then the connection ended
                deadline = time.time() + 5
                recs = []
                while time.time() < deadline and not recs:
                    recs = [r for r in eg.log_records() if r.get("event") == "access" and r.get("status") == 502]
                    time.sleep(0.05)
                self.assertTrue(recs, eg.log()[-1500:])
            finally:
                eg.stop()


class RouteTest(unittest.TestCase):
    """route(host, port) from a hook: the request goes elsewhere, and only to an allowed place."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="eg-route-")
        cert, key = make_tls_cert(self.tmp)
        self.cert = cert
        self.origin, self.mirror, self.tls = Origin(), Origin(), Origin(cert, key)
        self.eg = Daemon(policy="""return { api_version = 1,
          allowlist = {
            { name = "names", hosts = { "localhost", "tunnel.test" }, cidrs = { "127.0.0.1/32" }, ports = { %d, 443 } },
            { name = "mirror", hosts = { "127.0.0.1" }, cidrs = { "127.0.0.1/32" }, ports = { %d, %d } },
          },
          on_request = function(ctx)
            if ctx.path:find("^/mirror") then return route("127.0.0.1", %d) end
            if ctx.path:find("^/nowhere") then return route("10.9.9.9", 80) end
          end,
          on_connect = function(ctx)
            if ctx.host == "tunnel.test" then return route("127.0.0.1", %d) end
          end,
          tunnel = { require_sni_match = true },
        }""" % (self.origin.port, self.mirror.port, self.tls.port, self.mirror.port, self.tls.port))
        self.eg.start()

    def tearDown(self):
        self.eg.stop()
        for o in (self.origin, self.mirror, self.tls):
            o.stop()

    def test_request_routed_to_the_mirror(self):
        code, body = proxy_get(self.eg.port, "http://localhost:%d/mirror/x" % self.origin.port)
        self.assertEqual(code, 200)
        self.assertEqual(body, b"path=/mirror/x")
        self.assertEqual(self.origin.requests, [])
        self.assertEqual(len(self.mirror.requests), 1)
        self.assertEqual(self.mirror.requests[0][2]["Host"], "localhost:%d" % self.origin.port)
        code, body = proxy_get(self.eg.port, "http://localhost:%d/plain" % self.origin.port)
        self.assertEqual((code, body), (200, b"path=/plain"))
        self.assertEqual(len(self.origin.requests), 1)
        recs = [r for r in self.eg.log_records() if r.get("event") == "access" and r.get("route")]
        self.assertEqual(recs[-1]["route"], "127.0.0.1:%d" % self.mirror.port)
        before = self.eg.metrics()
        out = raw(self.eg.port, b"POST http://localhost:%d/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n"
                  b"Connection: close\r\n\r\n" % self.origin.port + b"y" * 1000)
        self.assertEqual(status_of(out), 200)
        m = self.eg.metrics()
        up, down = ('enrollgate_relayed_bytes_total{direction="%s"}' % d for d in ("client_to_upstream", "upstream_to_client"))
        self.assertEqual(m[up] - before[up], 1000)  # bodies and tunnel bytes, not heads
        self.assertEqual(m[down] - before[down], 1000)

    def test_route_outside_the_allowlist_is_refused(self):
        code, body = proxy_get(self.eg.port, "http://localhost:%d/nowhere" % self.origin.port)
        self.assertEqual(code, 403)
        self.assertIn(b"route target 10.9.9.9:80 is not in the allowlist", body)

    def test_tunnel_routed(self):
        import ssl
        s = socket.create_connection(("127.0.0.1", self.eg.port), timeout=5)
        s.sendall(b"CONNECT tunnel.test:443 HTTP/1.1\r\nHost: tunnel.test:443\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        self.assertEqual(status_of(head), 200)
        ctx = ssl.create_default_context(cafile=self.cert)
        ctx.check_hostname = False  # SNI names the CONNECT target (checked by the proxy); the cert is localhost's
        t = ctx.wrap_socket(s, server_hostname="tunnel.test")
        t.sendall(b"GET /small HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        got = read_all(t)
        t.close()
        self.assertTrue(got.endswith(b"x" * 100), got[-200:])


if __name__ == "__main__":
    unittest.main()
