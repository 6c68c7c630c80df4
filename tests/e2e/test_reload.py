"""Hot reload: SIGHUP / POST /reload / `enrollgate reload`, zero-drop under load, broken bundles,
and hooks that run away (time or memory) being denied while everything else keeps flowing."""
import os
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import EG_BIN, Daemon, DnsServer, Origin, free_port, proxy_get, raw, status_of

POLICY = """return {
  api_version = 1,
  allowlist = { { name = "local-origin", hosts = { "localhost" }, cidrs = { "127.0.0.0/8" }, ports = { "1024-65535" } } },
  on_request = function(ctx)
    if ctx.path:find("^/flip") or ctx.path:find("^/slow") then return %s end
    if ctx.path:find("^/loop") then while true do end end
    if ctx.path:find("^/pcall%%-loop") then while true do pcall(function() while true do end end) end end
    if ctx.path:find("^/hog") then local t = {} while true do t[#t + 1] = string.rep("x", 65536) .. #t end end
    if ctx.path:find("^/error") then error("boom") end
    if ctx.path:find("^/global") then leaked = 1 end
  end,
}
"""
ALLOW = POLICY % "allow()"
DENY = POLICY % 'deny(403, "flipped")'


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.origin = Origin()
        self.eg = Daemon(policy=ALLOW)
        self.eg.start()

    def tearDown(self):
        self.eg.stop()
        self.origin.stop()

    def url(self, path):
        return "http://localhost:%d%s" % (self.origin.port, path)

    def test_sighup_flips_verdict_same_pid(self):
        self.assertEqual(proxy_get(self.eg.port, self.url("/flip"))[0], 200)
        gen = self.eg.status()["generation"]
        self.eg.write_policy(DENY)
        os.kill(self.eg.proc.pid, signal.SIGHUP)
        deadline = time.time() + 10
        while self.eg.status()["generation"] == gen and time.time() < deadline:
            time.sleep(0.05)
        st = self.eg.status()
        self.assertEqual(st["generation"], gen + 1)
        self.assertEqual(st["pid"], self.eg.proc.pid)
        code, body = proxy_get(self.eg.port, self.url("/flip"))
        self.assertEqual(code, 403)
        self.assertIn(b"flipped", body)

    def test_post_reload_is_synchronous(self):
        gen = self.eg.status()["generation"]
        self.eg.write_policy(DENY)
        code, body = self.eg.reload()
        self.assertEqual(code, 200, body)
        self.assertIn('"result":"ok"', body)
        self.assertEqual(self.eg.status()["generation"], gen + 1)
        self.assertEqual(proxy_get(self.eg.port, self.url("/flip"))[0], 403)

    def test_cli_reload(self):
        self.eg.write_policy(DENY)
        p = subprocess.run([EG_BIN, "reload", "-c", self.eg.conf, "--admin", "127.0.0.1:%d" % self.eg.admin_port],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(proxy_get(self.eg.port, self.url("/flip"))[0], 403)

    def test_broken_bundle_keeps_old_policy(self):
        gen = self.eg.status()["generation"]
        self.eg.write_policy("return {\n api_version = 1,\n allowlist = {\n  { name = 'x' hosts = {} },\n }\n}\n")
        code, body = self.eg.reload()
        self.assertEqual(code, 422, body)
        st = self.eg.status()
        self.assertEqual(st["generation"], gen)
        self.assertEqual(st["last_reload"]["result"], "error")
        self.assertTrue(st["last_reload"]["file"].endswith("policy.lua"))
        self.assertEqual(st["last_reload"]["line"], 4)
        self.assertEqual(proxy_get(self.eg.port, self.url("/flip"))[0], 200)  # old policy still live
        m = self.eg.metrics()
        self.assertEqual(m['enrollgate_reloads_total{result="error"}'], 1)
        # a failing self-test vector is a broken bundle too
        self.eg.write_policy(ALLOW.replace("  on_request", '  selftest = { { host = "localhost", port = 22, expect = "allow" } },\n  on_request'))
        code, body = self.eg.reload()
        self.assertEqual(code, 422)
        self.assertIn('"stage":"selftest"', body)

    def test_runaway_hooks_denied_within_budget(self):
        for path, what in (("/loop", "time budget"), ("/pcall-loop", "time budget"), ("/hog", "memory"),
                           ("/error", "boom"), ("/global", "globals are locked")):
            t0 = time.time()
            code, body = proxy_get(self.eg.port, self.url(path), timeout=10)
            self.assertEqual(code, 403, path)
            self.assertIn(what.encode(), body, path)
            self.assertLess(time.time() - t0, 3, path)
            # the state is still usable afterwards
            self.assertEqual(proxy_get(self.eg.port, self.url("/ok"))[0], 200)
        m = self.eg.metrics()
        self.assertGreaterEqual(m['enrollgate_hook_failures_total{kind="timeout"}'], 2)
        self.assertGreaterEqual(m['enrollgate_hook_failures_total{kind="memory"}'], 1)
        self.assertGreaterEqual(m['enrollgate_hook_failures_total{kind="error"}'], 2)

    def test_other_requests_flow_while_hook_runs_away(self):
        results = []

        def loop_requests():
            for _ in range(5):
                results.append(proxy_get(self.eg.port, self.url("/loop"), timeout=10)[0])

        t = threading.Thread(target=loop_requests)
        t.start()
        ok = 0
        for _ in range(30):
            ok += proxy_get(self.eg.port, self.url("/small"))[0] == 200
        t.join()
        self.assertEqual(ok, 30)
        self.assertEqual(results, [403] * 5)

    def test_reloads_under_load_zero_failures_tunnel_survives(self):
        # a tunnel established before the reloads must survive all of them
        tunnel = socket.create_connection(("127.0.0.1", self.eg.port), timeout=5)
        tunnel.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: x\r\n\r\n" % self.origin.port)
        self.assertIn(b" 200 ", tunnel.recv(4096))
        stop = threading.Event()
        failures, done = [], [0]
        seen = {"allow": 0, "deny": 0}

        def load():
            # /small is allowed by both policies; /flip by ALLOW only (403 "flipped", which closes
            # the connection): every answer must be one of these, whole, whatever the reload.
            s, i = None, 0
            while not stop.is_set():
                path = "/flip" if i % 2 else "/small"
                i += 1
                try:
                    if s is None:
                        s = socket.create_connection(("127.0.0.1", self.eg.port), timeout=5)
                        f = s.makefile("rb")
                    s.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % self.url(path).encode())
                    line = f.readline()
                    length = 0
                    while True:
                        h = f.readline()
                        if h in (b"\r\n", b""):
                            break
                        if h.lower().startswith(b"content-length:"):
                            length = int(h.split(b":")[1])
                    body = f.read(length)
                    if path == "/small" and b" 200 " in line and body == b"x" * 100:
                        pass
                    elif path == "/flip" and b" 200 " in line and body == b"path=/flip":
                        seen["allow"] += 1
                    elif path == "/flip" and b" 403 " in line and b"flipped" in body:
                        seen["deny"] += 1
                        s.close()  # an error answer ends the connection
                        s = None
                    else:
                        failures.append((path, line, body[:80]))
                        s.close()
                        s = None
                    done[0] += 1
                except OSError as e:
                    failures.append((path, repr(e)))
                    s = None
            if s:
                s.close()

        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        gen0 = self.eg.status()["generation"]
        for i in range(40):
            self.eg.write_policy(ALLOW if i % 2 else DENY)
            if i % 2:
                os.kill(self.eg.proc.pid, signal.SIGHUP)
            else:
                self.assertEqual(self.eg.reload()[0], 200)
            time.sleep(0.1)  # each policy lives long enough for the load to meet it
        time.sleep(0.3)
        stop.set()
        for w in workers:
            w.join()
        self.assertEqual(failures, [])
        self.assertGreater(done[0], 100)
        self.assertGreater(seen["allow"], 0, "the load never saw the ALLOW policy")
        self.assertGreater(seen["deny"], 0, "the load never saw the DENY policy")
        self.assertGreaterEqual(self.eg.status()["generation"], gen0 + 30)
        # the old tunnel still carries a request
        tunnel.sendall(b"GET /small HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        got = b""
        while True:
            chunk = tunnel.recv(65536)
            if not chunk:
                break
            got += chunk
        tunnel.close()
        self.assertIn(b"x" * 100, got)


    def test_request_in_flight_keeps_its_generation(self):
        # decided under ALLOW, still waiting for the origin while DENY goes live: it is answered
        # as it started, and logged with its own generation
        gen = self.eg.status()["generation"]
        res = []
        t = threading.Thread(target=lambda: res.append(proxy_get(self.eg.port, self.url("/slow"), timeout=10)))
        t.start()
        time.sleep(0.1)
        self.eg.write_policy(DENY)
        self.assertEqual(self.eg.reload()[0], 200)
        self.assertEqual(self.eg.status()["generation"], gen + 1)
        t.join()
        self.assertEqual(res[0][0], 200)
        self.assertEqual(proxy_get(self.eg.port, self.url("/slow"))[0], 403)  # the next one: the new policy
        recs = [r for r in self.eg.log_records() if r.get("event") == "access" and "/slow" in r.get("target", "")]
        self.assertEqual([(r["status"], r["gen"]) for r in recs[-2:]], [(200, gen), (403, gen + 1)])


class DnsReloadTest(unittest.TestCase):
    """Name servers come from dns.resolv_conf and are read again on every reload: new DNS servers
    (a DHCP lease) take effect with SIGHUP, same process, no restart."""

    def test_new_name_servers_on_sighup(self):
        origin, dns = Origin(), DnsServer(["dnstest.example"])
        eg = Daemon(policy="""return { api_version = 1, allowlist = {
          { name = "dns-test", hosts = { "dnstest.example" }, cidrs = { "127.0.0.0/8" }, ports = { "1024-65535" } } } }""")
        resolv = os.path.join(eg.dir, "resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver 127.0.0.1:%d\n" % free_port())  # nobody answers there
        with open(os.path.join(eg.conf, "enrollgate.lua"), "w") as f:
            f.write('return { log = { level = "info" }, limits = { dns_timeout = 1 }, dns = { resolv_conf = "%s" } }' % resolv)
        eg.start()
        try:
            url = "http://dnstest.example:%d/small" % origin.port
            code, body = proxy_get(eg.port, url, timeout=10)
            self.assertIn(code, (502, 504), body)
            self.assertEqual(dns.queries, 0)
            with open(resolv, "w") as f:
                f.write("nameserver 127.0.0.1:%d\n" % dns.port)
            gen = eg.status()["generation"]
            os.kill(eg.proc.pid, signal.SIGHUP)
            deadline = time.time() + 10
            while eg.status()["generation"] == gen and time.time() < deadline:
                time.sleep(0.05)
            self.assertEqual(eg.status()["pid"], eg.proc.pid)
            code, body = proxy_get(eg.port, url, timeout=10)
            self.assertEqual(code, 200, body)
            self.assertGreater(dns.queries, 0)
            self.assertIn("1 name server(s) from " + resolv, eg.log())
        finally:
            eg.stop()
            dns.stop()
            origin.stop()

    def test_bad_resolv_conf_setting_is_a_check_error(self):
        eg = Daemon()
        with open(os.path.join(eg.conf, "enrollgate.lua"), "w") as f:
            f.write('return {\n  dns = { resolv_conf = "relative/path" },\n}\n')
        try:
            p = subprocess.run([EG_BIN, "check", "-c", eg.conf], capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 1)
            self.assertIn("enrollgate.lua:2: dns.resolv_conf: expected an absolute path", p.stdout + p.stderr)
        finally:
            eg.stop()


class DrainTest(unittest.TestCase):
    def test_sigterm_drains_and_exits_zero(self):
        origin = Origin()
        eg = Daemon()
        eg.start()
        try:
            res = []
            t = threading.Thread(target=lambda: res.append(proxy_get(eg.port, "http://localhost:%d/slow" % origin.port)))
            t.start()
            time.sleep(0.1)
            eg.proc.send_signal(signal.SIGTERM)
            t.join()
            self.assertEqual(res[0][0], 200)  # the request in flight finished
            self.assertEqual(eg.proc.wait(10), 0)
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", eg.port), timeout=1).close()
        finally:
            eg.stop()
            origin.stop()


    def test_drain_is_bounded_by_drain_timeout(self):
        # a request the origin never answers does not hold the exit beyond drain_timeout
        origin = Origin()
        eg = Daemon(settings='return { limits = { drain_timeout = 1, response_timeout = 60 } }')
        eg.start()
        try:
            s = socket.create_connection(("127.0.0.1", eg.port), timeout=10)
            s.sendall(b"GET http://localhost:%d/silent HTTP/1.1\r\nHost: localhost\r\n\r\n" % origin.port)
            time.sleep(0.3)
            t0 = time.time()
            eg.proc.send_signal(signal.SIGTERM)
            self.assertEqual(eg.proc.wait(10), 0)
            took = time.time() - t0
            self.assertGreater(took, 0.8)   # it did wait for the request...
            self.assertLess(took, 4)        # ...for about drain_timeout, not the origin's 30 s
            s.close()
        finally:
            eg.stop()
            origin.stop()


if __name__ == "__main__":
    unittest.main()
