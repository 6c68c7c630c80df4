"""The command line: check (nginx -t style), version, --help, start-up errors."""
import os
import subprocess
import unittest

from harness import EG_BIN, EG_SRC, Daemon, free_port


def run(*args):
    return subprocess.run([EG_BIN] + list(args), capture_output=True, text=True, timeout=30)


class CliTest(unittest.TestCase):
    def test_version_and_help(self):
        p = run("version")
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"^enrollgate \d+\.\d+\.\d+")
        for cmd in ("run", "check", "reload", "version", "hash-password"):
            p = run(cmd, "--help")
            self.assertEqual(p.returncode, 0)
            self.assertIn("enrollgate " + cmd, p.stdout)
            self.assertNotRegex(p.stdout, r"^enrollgate \d")  # the help, not the version line
        self.assertEqual(run("bogus").returncode, 2)
        self.assertEqual(run("version", "bogus").returncode, 2)

    def test_check_without_c_uses_the_source_tree_conf(self):
        # from the build tree, `check` without -c reads conf/ of the source tree (README)
        p = run("check")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(os.path.join(EG_SRC, "conf"), p.stdout)

    def test_check_ok(self):
        p = run("check", "-c", os.path.join(EG_SRC, "conf"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("ok", p.stdout)

    def check_broken(self, policy, line, fragment):
        d = Daemon(policy=policy)
        try:
            p = run("check", "-c", d.conf)
            self.assertEqual(p.returncode, 1)
            path = os.path.join(d.conf, "policy.lua")
            self.assertTrue(p.stderr.startswith("%s:%d: " % (path, line)), p.stderr)
            self.assertIn(fragment, p.stderr)
        finally:
            d.stop()

    def check_cmp(self, cmp_lua, line, fragment):
        """`enrollgate check` on a cmp.lua: file:line: message, exit 1 (line 0: just the file)."""
        d = Daemon()
        try:
            path = os.path.join(d.conf, "cmp.lua")
            with open(path, "w") as f:
                f.write(cmp_lua)
            p = run("check", "-c", d.conf)
            self.assertEqual(p.returncode, 1, p.stdout)
            self.assertTrue(p.stderr.startswith("%s:%d: " % (path, line)), p.stderr)
            self.assertIn(fragment, p.stderr)
        finally:
            d.stop()

    def test_check_cmp_lua_errors(self):
        ok_alias = 'a = { upstreams = { "http://127.0.0.1:9/pkix/" }, mac = { k = "s" } }'
        hook = 'on_message = require("policies.cmp").policy{}'
        base = 'return {\n  listen = { "127.0.0.1:0" },\n  aliases = { %s },\n  %s,\n}\n'
        self.check_cmp(base % ('a = { upstreams = { "ftp://x/" } }', hook), 3, "expected http[s]://host")
        self.check_cmp(base % ('a = { upstreams = { "http://x/" }, types = { "ir", "bogus" } }', hook), 3,
                       "unknown message type 'bogus'")
        self.check_cmp(base % ('a = { upstreams = { "http://x/" }, protection = { "maybe" } }', hook), 3,
                       "unknown kind")
        self.check_cmp(base % ('a = { upstreams = { "http://x/" }, signature = { issuers = "nope.pem" } }', hook), 3,
                       "nope.pem: not found")
        self.check_cmp(base % ('a = { upstreams = { "http://x/" }, mac = { k = { file = "no-secret" } } }', hook), 3,
                       "cannot read a secret")
        self.check_cmp(base % ('a = { upstreams = { "http://x/" }, backend = "queue" }', hook), 3,
                       'unknown backend (this version has "http")')
        self.check_cmp(base % (ok_alias, 'colour = "blue"'), 4, "unknown key 'colour'")
        self.check_cmp('return {\n  listen = { "127.0.0.1:0" },\n  aliases = { %s },\n}\n' % ok_alias, 0,
                       "on_message: a function is required")
        self.check_cmp(base % (ok_alias, hook + ',\n  default_alias = "zz"'), 5, "not one of the aliases")

    CMP_OK = ('return {\n  listen = { "127.0.0.1:%d" },\n'
              '  aliases = { a = { upstreams = { "http://127.0.0.1:9/pkix/" }, mac = { k = "s" } } },\n'
              '  on_message = require("policies.cmp").policy{},\n}\n')

    def test_openssl_is_loaded_only_for_est_or_cmp(self):
        """A proxy alone never maps OpenSSL (ra.h); a cmp.lua loads the EST/CMP module and with it
        OpenSSL; without the module such a configuration does not load (fail closed)."""
        d = Daemon()
        try:
            d.start()
            with open("/proc/%d/maps" % d.proc.pid) as f:
                maps = f.read()
            for lib in ("libcrypto", "libssl", "enrollgate-ra"):
                self.assertNotIn(lib, maps)
        finally:
            d.stop()
        d = Daemon()
        try:
            with open(os.path.join(d.conf, "cmp.lua"), "w") as f:
                f.write(self.CMP_OK % free_port())
            d.start()
            with open("/proc/%d/maps" % d.proc.pid) as f:
                maps = f.read()
            self.assertIn("enrollgate-ra.so", maps)
            self.assertIn("libcrypto", maps)
            env = dict(os.environ, ENROLLGATE_RA_MODULE="/nonexistent/enrollgate-ra.so")
            p = subprocess.run([EG_BIN, "check", "-c", d.conf], capture_output=True, text=True, timeout=30, env=env)
            self.assertEqual(p.returncode, 1, p.stdout)
            self.assertIn("cmp.lua:0: cannot load the EST/CMP module: /nonexistent/enrollgate-ra.so", p.stderr)
            p = subprocess.run([EG_BIN, "hash-password"], input="pw\n", capture_output=True, text=True, timeout=30,
                               env=env)
            self.assertEqual(p.returncode, 1)
            self.assertIn("cannot load the EST/CMP module", p.stderr)
        finally:
            d.stop()

    def test_check_syntax_error(self):
        self.check_broken("return {\n  api_version = 1,\n  allowlist = {\n    { name = 'a', hosts = { 'x.example' } ports = {443} },\n  },\n}\n",
                          4, "expected")

    def test_check_rule_without_ports(self):
        self.check_broken("return {\n  api_version = 1,\n  allowlist = {\n    { name = 'noports', hosts = { 'x.example' } },\n  },\n}\n",
                          4, "no ports")

    def test_check_runtime_error_and_sandbox(self):
        self.check_broken("local x = 1\nos.execute('true')\nreturn { api_version = 1, allowlist = {} }\n", 2, "execute")
        self.check_broken("local f = io.open('/etc/passwd')\nreturn {}\n", 1, "io")

    def test_check_endless_top_level_fails_within_budget(self):
        # the load budget (50M instructions or 2 s) stops a file that never finishes
        self.check_broken("local n = 0\nwhile true do n = n + 1 end\nreturn {}\n", 2, "loading exceeded its budget")

    def test_check_helper_reports_policy_line(self):
        self.check_broken("local A = require 'policies.allowlist'\nreturn {\n  api_version = 1,\n"
                          "  allowlist = A.rules {\n    { hosts = { 'x.example' }, ports = { 'abc' } },\n  },\n}\n",
                          4, "bad port")

    def test_check_bytecode_refused(self):
        d = Daemon()
        try:
            with open(os.path.join(d.conf, "policy.lua"), "wb") as f:
                f.write(b"\x1bLua\x54\x00garbage")
            p = run("check", "-c", d.conf)
            self.assertEqual(p.returncode, 1)
            self.assertIn("binary", p.stderr)
        finally:
            d.stop()

    def test_run_refuses_broken_bundle_at_startup(self):
        d = Daemon(policy="return { api_version = 2, allowlist = {} }\n")
        try:
            d.start(check=False)
            self.assertEqual(d.proc.wait(10), 1)
            self.assertIn("policy.lua:1: api_version must be 1", d.log())
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
