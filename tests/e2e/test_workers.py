"""workers = 2: a second forward-proxy process on the same listener (SO_REUSEPORT), started, reloaded,
restarted and stopped by the master, its counters in the master's /metrics and /status."""
import os
import signal
import subprocess
import time
import unittest

from harness import EG_BIN, EG_SRC, Daemon, Origin, proxy_get

POLICY = """return {
  api_version = 1,
  allowlist = { { name = "local-origin", hosts = { "localhost" }, cidrs = { "127.0.0.0/8" }, ports = { "1024-65535" } } },
  on_request = function(ctx)
    if ctx.path:find("^/flip") then return %s end
  end,
}
"""
ALLOW = POLICY % "allow()"
DENY = POLICY % 'deny(403, "flipped")'
N = 40  # fresh connections per check: all on one process has a chance of 2^-39


def settings(workers):
    with open(os.path.join(EG_SRC, "tests", "e2e", "conf", "enrollgate.lua")) as f:
        text = f.read()
    return text.replace("return {", "return {\n  workers = %s," % workers, 1)


def wait_for(pred, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


class WorkersTest(unittest.TestCase):
    def setUp(self):
        self.origin = Origin()
        self.eg = Daemon(policy=ALLOW, settings=settings(2))
        self.eg.start()
        # the worker answers once it has bound the listener: wait for its first published counters
        self.assertTrue(wait_for(lambda: "generation" in self.worker()), self.eg.status())

    def tearDown(self):
        self.eg.stop()
        self.origin.stop()

    def url(self, path):
        return "http://localhost:%d%s" % (self.origin.port, path)

    def worker(self):
        return self.eg.status()["workers"][1]

    def codes(self, path):
        return [proxy_get(self.eg.port, self.url(path))[0] for _ in range(N)]

    def test_second_process_shares_the_listener_and_its_counters_are_summed(self):
        st = self.eg.status()
        self.assertEqual([w["worker"] for w in st["workers"]], [0, 1])
        w1 = st["workers"][1]
        self.assertTrue(w1["running"])
        self.assertNotEqual(w1["pid"], self.eg.proc.pid)
        with open("/proc/%d/cmdline" % w1["pid"], "rb") as f:
            argv = f.read().split(b"\0")
        self.assertIn(b"--worker", argv)
        self.assertEqual(w1["bundle_sha256"], st["bundle_sha256"])
        self.assertIs(w1["draining"], False)
        self.assertEqual(self.codes("/ok"), [200] * N)
        # each process counts what it accepted and answered; the worker publishes every 200 ms, so
        # a snapshot may hold a connection whose answer it does not count yet: wait for both
        def settled():
            m = self.eg.metrics()
            return m if m["enrollgate_connections_total"] == N and \
                m.get('enrollgate_responses_total{code="200"}') == N else None
        m = wait_for(settled)
        self.assertTrue(m, self.eg.metrics())
        per = [w["connections_total"] for w in self.eg.status()["workers"]]
        self.assertEqual(sum(per), N)
        self.assertTrue(all(n > 0 for n in per), per)
        self.assertEqual(m["enrollgate_connections_total"], N)
        self.assertEqual(m['enrollgate_responses_total{code="200"}'], N)
        self.assertEqual(m["enrollgate_worker_processes"], 2)
        self.assertEqual(self.eg.metrics()['enrollgate_requests_total{verdict="allow"}'], N)
        recs = [r for r in self.eg.log_records() if r.get("event") == "access"]
        self.assertEqual(len(recs), N)
        self.assertEqual(sum(1 for r in recs if r.get("worker") == 1), per[1])

    def test_reload_reaches_every_worker(self):
        self.assertEqual(self.codes("/flip"), [200] * N)
        gen = self.worker()["generation"]
        self.eg.write_policy(DENY)
        code, body = self.eg.reload()
        self.assertEqual(code, 200, body)
        self.assertTrue(wait_for(lambda: self.worker()["generation"] == gen + 1), self.worker())
        self.assertEqual(self.codes("/flip"), [403] * N)
        # SIGHUP to the master reaches the worker too
        self.eg.write_policy(ALLOW)
        os.kill(self.eg.proc.pid, signal.SIGHUP)
        self.assertTrue(wait_for(lambda: self.worker()["generation"] == gen + 2
                                 and self.eg.status()["generation"] == gen + 2), self.eg.status())
        self.assertEqual(self.codes("/flip"), [200] * N)

    def test_broken_policy_keeps_the_last_good_one_everywhere(self):
        sha = self.worker()["bundle_sha256"]
        self.eg.write_policy("return { api_version = 1, allowlist = { { name = 'x' hosts = {} } } }\n")
        code, _ = self.eg.reload()
        self.assertEqual(code, 422)
        self.assertTrue(wait_for(lambda: self.worker()["last_reload"] == "error"), self.worker())
        self.assertEqual(self.worker()["bundle_sha256"], sha)
        self.assertEqual(self.codes("/flip"), [200] * N)

    def test_a_worker_that_dies_is_started_again(self):
        self.assertEqual(self.codes("/ok"), [200] * N)
        wait_for(lambda: self.eg.metrics()["enrollgate_connections_total"] == N)
        old = self.worker()["pid"]
        os.kill(old, signal.SIGKILL)
        w = wait_for(lambda: (lambda w: w if w["running"] and w["pid"] != old and "generation" in w else None)(
            self.worker()))
        self.assertTrue(w, self.eg.status())
        self.assertEqual(w["restarts"], 1)
        self.assertTrue(alive(w["pid"]))
        self.assertEqual(self.codes("/ok"), [200] * N)
        # what the dead worker had counted stays counted
        self.assertTrue(wait_for(lambda: self.eg.metrics()["enrollgate_connections_total"] == 2 * N),
                        self.eg.metrics()["enrollgate_connections_total"])
        self.assertEqual(self.eg.metrics()["enrollgate_worker_restarts_total"], 1)
        self.assertIn("killed by signal 9", self.eg.log())

    def test_a_restarted_worker_holds_none_of_the_masters_sockets(self):
        # kept-alive clients: those on the master hold upstream connections (libevent opens them
        # without FD_CLOEXEC), which must not be inherited by a worker it starts
        import socket as so
        clients = []
        for _ in range(N):
            c = so.create_connection(("127.0.0.1", self.eg.port), timeout=5)
            c.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % self.url("/ok")).encode())
            self.assertIn(b" 200 ", c.recv(65536))
            clients.append(c)
        try:
            def sockets(pid):
                out = set()
                for fd in os.listdir("/proc/%d/fd" % pid):
                    try:
                        t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                    except OSError:
                        continue
                    if t.startswith("socket:"):
                        out.add(t)
                return out
            master = sockets(self.eg.proc.pid)
            self.assertGreater(len(master), N // 2)
            old = self.worker()["pid"]
            os.kill(old, signal.SIGKILL)
            w = wait_for(lambda: (lambda w: w if w["running"] and w["pid"] != old and "generation" in w else None)(
                self.worker()))
            self.assertTrue(w, self.eg.status())
            self.assertEqual(sockets(w["pid"]) & master, set())
        finally:
            for c in clients:
                c.close()

    def test_reloads_while_a_worker_starts_do_not_kill_it(self):
        old = self.worker()["pid"]
        os.kill(old, signal.SIGKILL)
        end = time.time() + 2.0  # the new worker starts after 1 s: SIGHUPs every 10 ms around it
        while time.time() < end:
            os.kill(self.eg.proc.pid, signal.SIGHUP)
            time.sleep(0.01)
        w = wait_for(lambda: (lambda w: w if w["running"] and "generation" in w else None)(self.worker()))
        self.assertTrue(w, self.eg.status())
        self.assertEqual(w["restarts"], 1, self.eg.log()[-3000:])
        self.assertNotIn("killed by signal 1;", self.eg.log())

    def test_a_worker_that_cannot_start_is_tried_less_often(self):
        old = self.worker()["pid"]
        self.eg.write_policy("return { api_version = 1, allowlist = { { name = 'x' hosts = {} } } }\n")
        os.kill(old, signal.SIGKILL)
        # the restart loads the broken file, exits at once, and the next try waits twice as long
        self.assertTrue(wait_for(lambda: "exited with status 1; starting it again in 2 s" in self.eg.log(), 8),
                        self.eg.log()[-2000:])
        self.assertFalse(self.worker()["running"])
        self.assertEqual(self.codes("/ok"), [200] * N)  # the master alone serves meanwhile
        self.eg.write_policy(ALLOW)
        w = wait_for(lambda: (lambda w: w if w["running"] and "generation" in w else None)(self.worker()), 10)
        self.assertTrue(w, self.eg.status())
        self.assertGreaterEqual(w["restarts"], 2)

    def test_a_change_of_workers_waits_for_a_restart(self):
        with open(os.path.join(self.eg.conf, "enrollgate.lua"), "w") as f:
            f.write(settings(3))
        code, body = self.eg.reload()
        self.assertEqual(code, 200, body)
        self.assertIn("a change of workers takes effect at the next restart", self.eg.log())
        self.assertEqual(len(self.eg.status()["workers"]), 2)

    def test_sigterm_stops_every_process(self):
        pid = self.worker()["pid"]
        self.eg.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.eg.proc.wait(10), 0)
        self.assertFalse(alive(pid))

    def test_worker_ends_with_its_master(self):
        pid = self.worker()["pid"]
        self.eg.proc.kill()
        self.eg.proc.wait(5)
        self.assertTrue(wait_for(lambda: not alive(pid), 8), "worker %d outlived its master" % pid)


class WorkersSettingTest(unittest.TestCase):
    def test_bad_workers_value_is_a_check_error(self):
        eg = Daemon(policy=ALLOW, settings=settings('"many"'))
        try:
            p = subprocess.run([EG_BIN, "check", "-c", eg.conf], capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 1)
            self.assertIn("workers: expected", p.stderr)
            self.assertIn("enrollgate.lua:", p.stderr)
        finally:
            eg.stop()

    def test_worker_options_are_checked(self):
        eg = Daemon(policy=ALLOW)
        try:
            for args, msg in ((["--workers", "0"], "--workers: expected auto or 1..64"),
                              (["--workers", "x"], "--workers: expected auto or 1..64"),
                              (["--worker", "1"], "--worker needs --worker-shm"),
                              (["--worker", "0", "--worker-shm", "5"], "--worker: expected 1..63")):
                p = subprocess.run([EG_BIN, "run", "-c", eg.conf] + args, capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 2, args)
                self.assertIn(msg, p.stderr, args)
        finally:
            eg.stop()

    def test_auto_is_one_process_per_cpu(self):
        origin = Origin()
        eg = Daemon(policy=ALLOW, settings=settings('"auto"'))
        try:
            eg.start()
            n = min(os.cpu_count() or 1, 64)
            st = eg.status()
            if n == 1:
                self.assertNotIn("workers", st)
            else:
                self.assertEqual([w["worker"] for w in st["workers"]], list(range(n)))
                self.assertTrue(wait_for(lambda: all("generation" in w for w in eg.status()["workers"])))
            self.assertEqual(proxy_get(eg.port, "http://localhost:%d/ok" % origin.port)[0], 200)
        finally:
            eg.stop()
            origin.stop()

    def test_workers_one_has_no_worker_process(self):
        origin = Origin()
        eg = Daemon(policy=ALLOW, settings=settings(1))
        try:
            eg.start()
            self.assertNotIn("workers", eg.status())
            self.assertEqual(proxy_get(eg.port, "http://localhost:%d/ok" % origin.port)[0], 200)
            self.assertEqual(eg.metrics()["enrollgate_worker_processes"], 1)
        finally:
            eg.stop()
            origin.stop()


if __name__ == "__main__":
    unittest.main()
