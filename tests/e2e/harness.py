"""Test harness for enrollgate end-to-end tests: local origins and a daemon on 127.0.0.1 only."""
import http.server
import json
import os
import random
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request

EG_BIN = os.environ.get("EG_BIN", "build/enrollgate")
EG_SRC = os.environ.get("EG_SRC", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_bytes(n):
    """n reproducible pseudo-random bytes (the origin's /random/N, /until-close/N and /truncated/N)."""
    return random.Random(n).randbytes(n)


class OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, code, body, ctype="text/plain", extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        self.server.peers.append(self.client_address)  # which TCP connection carried it
        if self.path.startswith("/small"):
            self._send(200, b"x" * 100)
        elif self.path.startswith("/headers"):
            self._send(200, json.dumps({k.lower(): v for k, v in self.headers.items()}).encode(), "application/json")
        elif self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path.startswith("/big"):
            self._send(200, b"b" * (4 * 1024 * 1024))
        elif self.path.startswith("/random/"):
            n = int(self.path.split("/")[2])
            self._send(200, random_bytes(n), "application/octet-stream")
        elif self.path.startswith("/until-close/"):
            # no Content-Length, not chunked: the body ends when the connection does
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(random_bytes(n))
            self.close_connection = True
        elif self.path.startswith("/truncated/"):
            # announces n bytes, sends a fifth of them, closes
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            self.wfile.write(random_bytes(n)[: n // 5])
            self.close_connection = True
        elif self.path.startswith("/then-close"):
            # a complete answer that promises nothing about the connection, then the origin
            # closes it anyway (as the openssl cmp mock does)
            self._send(200, b"then-close")
            self.wfile.flush()
            self.close_connection = True
        elif self.path.startswith("/slow"):
            time.sleep(0.3)
            self._send(200, b"slow")
        elif self.path.startswith("/silent"):
            time.sleep(30)
        else:
            self._send(200, b"path=" + self.path.encode())

    do_HEAD = do_GET

    def do_POST(self):
        body = self._read_body()
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        self.server.peers.append(self.client_address)
        if self.path.startswith("/slow"):
            time.sleep(0.5)  # an answer that takes longer than a short idle_timeout
        self._send(200, body, "application/octet-stream")


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients (the proxy) closing kept-alive connections is normal here


class Origin:
    """A threaded HTTP (or HTTPS) origin on 127.0.0.1."""

    def __init__(self, tls_cert=None, tls_key=None):
        self.httpd = QuietServer(("127.0.0.1", 0), OriginHandler)
        self.httpd.daemon_threads = True
        self.httpd.requests = []
        self.httpd.peers = []
        if tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_cert, tls_key)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self):
        return self.httpd.requests

    @property
    def peers(self):
        """(address, port) of the connection each request came on, in order."""
        return self.httpd.peers

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class DnsServer:
    """A DNS responder on 127.0.0.1:<port> (UDP) answering A queries for the given names with
    127.0.0.1 and everything else with NXDOMAIN; counts the queries it saw."""

    def __init__(self, names):
        self.names = {n.lower().rstrip(".") for n in names}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                q, peer = self.sock.recvfrom(2048)
            except OSError:
                return
            if len(q) < 12:
                continue
            self.queries += 1
            i, labels = 12, []
            while i < len(q) and q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace"))
                i += 1 + q[i]
            qtype = q[i + 1:i + 3]
            question = q[12:i + 5]
            name = ".".join(labels).lower()
            known = name in self.names
            answer = b""
            if known and qtype == b"\x00\x01":
                answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04" + socket.inet_aton("127.0.0.1")
            flags = b"\x81\x80" if known else b"\x81\x83"
            head = q[:2] + flags + b"\x00\x01" + (b"\x00\x01" if answer else b"\x00\x00") + b"\x00\x00\x00\x00"
            self.sock.sendto(head + question + answer, peer)

    def stop(self):
        self.sock.close()


def make_tls_cert(d):
    """Self-signed P-256 certificate for localhost/origin.test/127.0.0.1."""
    cert, key = os.path.join(d, "origin.crt"), os.path.join(d, "origin.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,DNS:origin.test,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class Daemon:
    """enrollgate run with a private copy of a configuration directory."""

    def __init__(self, conf_src=None, policy=None, settings=None):
        self.dir = tempfile.mkdtemp(prefix="eg-e2e-")
        self.conf = os.path.join(self.dir, "conf")
        shutil.copytree(conf_src or os.path.join(EG_SRC, "tests", "e2e", "conf"), self.conf)
        if policy is not None:
            self.write_policy(policy)
        if settings is not None:
            with open(os.path.join(self.conf, "enrollgate.lua"), "w") as f:
                f.write(settings)
        self.port, self.admin_port = free_port(), free_port()
        self.log_path = os.path.join(self.dir, "enrollgate.log")
        self.proc = None

    def write_policy(self, text):
        path = os.path.join(self.conf, "policy.lua")
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)

    def start(self, check=True, nofile=None):
        """nofile: run the daemon under that RLIMIT_NOFILE (soft and hard)."""
        self.logf = open(self.log_path, "ab")
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
        self.proc = subprocess.Popen([EG_BIN, "run", "-c", self.conf, "--listen", "127.0.0.1:%d" % self.port,
                                      "--admin", "127.0.0.1:%d" % self.admin_port],
                                     stdout=self.logf, stderr=self.logf, preexec_fn=limit)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                if check:
                    raise RuntimeError("enrollgate exited: " + self.log())
                return
            try:
                if self.admin("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("enrollgate did not become healthy: " + self.log())

    def admin(self, path, method="GET"):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.admin_port, path), method=method,
                                     data=b"" if method == "POST" else None)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=20) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def status(self):
        return json.loads(self.admin("/status")[1])

    def metrics(self):
        out = {}
        for line in self.admin("/metrics")[1].splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def log(self):
        time.sleep(0.25)  # the daemon flushes its log buffer every 100 ms
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_records(self):
        recs = []
        for line in self.log().splitlines():
            try:
                recs.append(json.loads(line))
            except ValueError:
                pass
        return recs

    def reload(self):
        return self.admin("/reload", "POST")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "logf", None):
            self.logf.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def raw(port, data, timeout=5.0, half_close=False, read=True):
    """Send raw bytes to the proxy, return everything it answers until it closes (or timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if data:
            s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        if not read:
            return b""
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def read_all(sock):
    """Everything sock delivers until the peer closes."""
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


def status_of(resp):
    line = resp.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def proxy_get(port, url, headers=None, timeout=5.0):
    """One absolute-form GET through the proxy with Connection: close; returns (status, body)."""
    host = url.split("/")[2]
    h = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
    resp = raw(port, ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n" % (url, host, h)).encode(), timeout)
    head, _, body = resp.partition(b"\r\n\r\n")
    return status_of(resp), body
