#!/usr/bin/env python3
"""Boot test of the enrollgate appliance image under QEMU (software emulation only).

    boottest.py --image build-appliance/image-test/enrollgate.img --firmware bios|uefi
                [--disk virtio|nvme|sata|usb] [--nic virtio|e1000e] [--reload hup|command]
                [--quick | --production] [--logdir DIR] [--name NAME]

Boots a sparse copy of the image (the image itself is never written) with
`qemu-system-x86_64 -accel tcg` (never KVM), user networking restricted to the VM (restrict=on: no
packet leaves it) and a host port forward 127.0.0.1:PORT -> guest :48999. The serial console of
a test image is a root shell; the script types commands there and reads the answers.

Checks (each printed as it passes):
  1. boot: a request through the forward gets the bundled policy's answer (403, not in the
     allowlist) -- the forward accepts before the guest listens, so the reply itself is checked;
  2. the layout: / is squashfs read-only, /etc an overlay, /data ext4; enrollgate runs as the
     unprivileged user enrollgate under runsv; its keys directory is 0700 and its own;
  3. edit + reload: policy.lua is edited over the serial console, `enrollgate check` passes, the
     daemon gets SIGHUP (or `enrollgate reload`); the next request through the forward gets the
     new verdict (451 from a hook), and the admin /status (read in the guest over its loopback)
     shows the same PID and the generation + 1;
  4. persistence: `sync; reboot`, the edit is still there and still answers;
     with --update IMG: poweroff, IMG's first 177 MiB (MBR, boot, root) written over the disk,
     power on: the edit (data partition) survived and the new disk signature is in use;
  5. supervision: SIGKILL to enrollgate, runsv starts a new one that answers;
  6. factory reset: `factory-reset --yes` (or --reset bootmenu: "factory-reset" typed at the
     boot loader's prompt) reboots to the bundled policy;
  7. poweroff: QEMU exits by itself.
--quick stops after 2. --production boots a production image: the proxy answers, and the serial
console asks for a login and runs nothing typed at it. Any failure (or --timeout) kills QEMU,
prints the serial console's tail and exits 1; QEMU also dies with this script, however it ends.
"""
import argparse
import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
GUEST_PORT = 48999
# what an update writes: the MBR and the boot and root partitions, up to the data partition
# (mkimage.sh: 1 MiB + 48 MiB boot + 128 MiB root)
UPDATE_BYTES = (1 + 48 + 128) << 20
TEST_HOST = "boottest.invalid"   # .invalid never resolves, and the VM has no way out anyway
EDITED_REASON = "blocked by the appliance boot test's policy edit"

# The policy the test writes over the serial console: the bundled allowlist plus a rule for the
# test host, and an on_request hook that denies it with 451 -- so the new verdict is decided in
# the guest and nothing is ever forwarded.
EDITED_POLICY = f"""-- edited by the appliance boot test
return {{
  api_version = 1,
  allowlist = {{
    {{ name = "letsencrypt", hosts = {{ "acme-v02.api.letsencrypt.org" }}, ports = {{ 443 }} }},
    {{ name = "boottest", hosts = {{ "{TEST_HOST}" }}, ports = {{ 80 }} }},
  }},
  on_request = function(ctx)
    if ctx.host == "{TEST_HOST}" then
      return deny(451, "{EDITED_REASON}")
    end
  end,
  selftest = {{
    {{ method = "GET", host = "{TEST_HOST}", port = 80, path = "/", expect = "deny" }},
  }},
}}
"""


class Failure(Exception):
    pass


class Appliance:
    """One QEMU process and its serial console."""

    def __init__(self, args, workdir):
        self.args = args
        self.t0 = time.monotonic()
        self.buf = b""
        self.n = 0
        self.q = None
        self.port = free_port()
        self.serial_log = open(os.path.join(args.logdir, f"serial-{args.name}.log"), "wb")
        # the disk: a sparse copy of the image (which is never written), so that --update can
        # write a newer image over it between two power-ons as one would over a real disk
        self.disk = os.path.join(workdir, "disk.img")
        subprocess.run(["cp", "--sparse=always", args.image, self.disk], check=True)
        self.cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-smp", "1", "-nodefaults",
                    "-display", "none", "-monitor", "none", "-serial", "stdio",
                    "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-:{GUEST_PORT}",
                    "-device", f"{'virtio-net-pci' if args.nic == 'virtio' else 'e1000e'},netdev=net0"]
        # (-nodefaults: no default CD-ROM, which UEFI would try first, and no VGA: the serial
        # console is all the test uses)
        if args.firmware == "uefi":
            vars_copy = os.path.join(workdir, "OVMF_VARS.fd")
            shutil.copyfile(OVMF_VARS, vars_copy)
            self.cmd += ["-machine", "q35",
                         "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                         "-drive", f"if=pflash,format=raw,file={vars_copy}"]
        else:
            self.cmd += ["-machine", "pc"]
        drive = f"file={self.disk},format=raw,if=none,id=disk0"
        self.cmd += {
            "virtio": ["-drive", drive, "-device", "virtio-blk-pci,drive=disk0"],
            "nvme": ["-drive", drive, "-device", "nvme,drive=disk0,serial=enrollgate0"],
            "sata": ["-drive", drive, "-device", "ahci,id=ahci0", "-device", "ide-hd,drive=disk0,bus=ahci0.0"],
            "usb": ["-drive", drive, "-device", "qemu-xhci,id=xhci0", "-device", "usb-storage,bus=xhci0.0,drive=disk0"],
        }[args.disk]
        self.power_on()

    def power_on(self):
        self.log(f"qemu: {' '.join(self.cmd)}")
        self.buf = b""
        self.q = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    def power_off(self):
        """`sync; poweroff` in the guest; QEMU must exit by itself."""
        self.type("sync; poweroff\n")
        try:
            self.q.wait(90)
        except subprocess.TimeoutExpired:
            raise Failure("QEMU still running 90 s after poweroff")

    def log(self, what):
        print(f"[{self.args.name} {time.monotonic() - self.t0:6.1f}s] {what}", flush=True)

    def ok(self, what):
        self.log(f"ok: {what}")

    # ---- serial console ----
    def _read(self, timeout):
        r, _, _ = select.select([self.q.stdout], [], [], timeout)
        if r:
            data = os.read(self.q.stdout.fileno(), 65536)
            if not data:
                raise Failure("QEMU closed the serial console (exited?)")
            self.serial_log.write(data)
            self.serial_log.flush()
            self.buf += data

    def expect(self, pattern, timeout):
        """Wait for regex pattern (bytes) in the console output; consume up to its end."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            if self.q.poll() is not None:
                raise Failure(f"QEMU exited ({self.q.returncode}) while waiting for {pattern!r}")
            left = end - time.monotonic()
            if left <= 0:
                raise Failure(f"timeout ({timeout}s) waiting for {pattern!r} on the serial console")
            self._read(min(left, 0.5))

    def type(self, text):
        self.q.stdin.write(text.encode())
        self.q.stdin.flush()

    def shell_ready(self, timeout=120):
        """Wait until the serial root shell answers (it starts after rcS; keystrokes sent before
        getty opens the port are lost, so ask again until it answers)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.n += 1
            self.type(f"\necho @@READY{self.n}@@$((6*7))\n")
            try:
                self.expect(rb"@@READY%d@@42" % self.n, 3)
                # a wide terminal: the line editor then never wraps (and redraws) a typed line
                self.sh("stty cols 4000 rows 50")
                return
            except Failure:
                if self.q.poll() is not None:
                    raise
        raise Failure("no shell on the serial console")

    def sh(self, command, timeout=60, check=True):
        """Run a command in the guest's serial shell; return (status, output)."""
        self.n += 1
        marker = f"__rc=$?; echo \"@@END{self.n}@@$((6*7)) rc=$__rc\""
        # one line when possible: the shell reads (and echoes) all of it before any output
        self.type(f"{command}\n{marker}\n" if "\n" in command else f"{command}; {marker}\n")
        m = self.expect(rb"(?s)(.*?)@@END%d@@42 rc=(\d+)" % self.n, timeout)
        out = m.group(1).decode(errors="replace").replace("\r", "")
        # drop the echo of what was typed: everything up to the end of the typed marker
        typed = out.rfind('rc=$__rc"')
        if typed >= 0:
            out = out[typed + len('rc=$__rc"'):]
        rc = int(m.group(2))
        if check and rc != 0:
            raise Failure(f"guest command failed (rc {rc}): {command}\n{out}")
        return rc, out.strip()

    def status(self):
        """The admin API's /status, read inside the guest (the admin listener is loopback only)."""
        _, out = self.sh("wget -qO- http://127.0.0.1:48998/status")
        try:
            return json.loads(out[out.index("{"):out.rindex("}") + 1])
        except ValueError:
            raise Failure(f"/status is not JSON: {out!r}")

    # ---- the proxy, through the host port forward ----
    def request(self, host=TEST_HOST, timeout=5):
        """GET http://host/ through the proxy; return (status, body) or None if no HTTP answer."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
                s.sendall(f"GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return None
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
        if not m:
            return None
        return int(m.group(1)), data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")

    def wait_answer(self, timeout):
        """Poll the forward until the proxy itself answers; return (status, body)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.q.poll() is not None:
                raise Failure(f"QEMU exited ({self.q.returncode}) before the proxy answered")
            r = self.request(timeout=3)
            if r:
                return r
            self._read(0.5)   # keep the console drained (and logged) meanwhile
        raise Failure(f"the proxy did not answer through 127.0.0.1:{self.port} within {timeout}s")

    def boot(self, what):
        """From power-on or reboot to the proxy answering; returns the answer."""
        t = time.monotonic()
        disk = self.expect(rb"initramfs: appliance disk (/dev/\S+)\r?\n", self.args.boot_timeout).group(1).decode()
        self.guest_disk = disk
        t_disk = time.monotonic() - t
        self.expect(rb"rcS: done", self.args.boot_timeout)
        t_rcs = time.monotonic() - t
        answer = self.wait_answer(self.args.boot_timeout)
        self.boot_times.append(time.monotonic() - t)
        self.ok(f"{what}: proxy answered through 127.0.0.1:{self.port} after {self.boot_times[-1]:.1f}s "
                f"(initramfs found {disk} at {t_disk:.1f}s, rcS done at {t_rcs:.1f}s; "
                f"HTTP {answer[0]}: {answer[1].strip()[:60]})")
        self.shell_ready()
        return answer

    def reboot(self, command):
        self.type(f"{command}\n")
        self.expect(rb"shutdown: stopping services", 60)

    def stop(self):
        if self.q and self.q.poll() is None:
            self.q.kill()
            self.q.wait()
        self.serial_log.close()


def loose(text):
    """A regex for text as a terminal shows it: any escape sequences between the characters."""
    esc = rb"(?:\x1b\[[0-9;=?]*[A-Za-z])*"
    return esc.join(re.escape(bytes([c])) for c in text.encode())


def die_with_parent():
    """In the QEMU child before exec: SIGKILL it if this script dies, however it dies."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expect_eq(what, got, want):
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


def run_production(args, vm):
    """A production image boots to the same answer, and its serial console is no shell."""
    vm.boot_times = []
    t = time.monotonic()
    vm.expect(rb"initramfs: appliance disk (/dev/\S+)\r?\n", args.boot_timeout)
    code, body = vm.wait_answer(args.boot_timeout)
    vm.boot_times.append(time.monotonic() - t)
    expect_eq("bundled policy's status for " + TEST_HOST, code, 403)
    vm.ok(f"production image: proxy answered after {vm.boot_times[-1]:.1f}s (403 {body.strip()[:60]})")
    vm.type("\n")
    vm.expect(rb"login: ", 60)
    vm.type("echo @@SHELL@@$((6*7))\n")
    vm.expect(rb"no root password yet|[Pp]assword: ", 30)
    vm.type("echo @@SHELL@@$((6*7))\n")
    try:
        vm.expect(rb"@@SHELL@@42", 8)
    except Failure:
        vm.ok("serial console: a login prompt, and typing at it runs nothing (no root shell)")
        return
    raise Failure("a production image ran a command typed on its serial console")


def run(args, vm):
    if args.production:
        return run_production(args, vm)
    vm.boot_times = []
    # 1. boot to listening, the bundled policy's verdict
    code, body = vm.boot(f"{args.firmware}/{args.disk} boot")
    expect_eq("bundled policy's status for " + TEST_HOST, code, 403)
    if "not in the allowlist" not in body:
        raise Failure(f"unexpected 403 body: {body!r}")
    vm.ok(f"bundled policy: 403 {body.strip()}")

    # 2. layout, users, permissions
    _, mounts = vm.sh("cat /proc/mounts")
    for point, fstype, opt in (("/", "squashfs", "ro"), ("/etc", "overlay", "rw"), ("/data", "ext4", "rw")):
        m = re.search(rf"^\S+ {re.escape(point)} (\S+) (\S+)", mounts, re.M)
        if not m or m.group(1) != fstype or opt not in m.group(2).split(","):
            raise Failure(f"{point} is not a {fstype} {opt} mount:\n{mounts}")
    vm.ok("mounts: / squashfs ro, /etc overlay rw (upper on /data), /data ext4 rw")
    st = vm.status()
    pid, gen = st["pid"], st["generation"]
    _, pidof = vm.sh("pidof enrollgate")
    expect_eq("pidof enrollgate", pidof.split(), [str(pid)])
    _, user = vm.sh(f"stat -c %U /proc/{pid}")
    expect_eq("user of the enrollgate process", user, "enrollgate")
    _, keys = vm.sh("stat -c '%a %U' /etc/enrollgate/keys")
    expect_eq("/etc/enrollgate/keys mode and owner", keys, "700 enrollgate")
    _, sv = vm.sh("sv status enrollgate")
    if not sv.startswith(f"run: enrollgate: (pid {pid})"):
        raise Failure(f"sv status: {sv!r}")
    vm.ok(f"enrollgate pid {pid} runs as 'enrollgate' under runsv, generation {gen}, keys/ 0700 enrollgate")
    _, release = vm.sh("cat /usr/lib/enrollgate-appliance/release | head -5")
    vm.log("release: " + " ".join(release.split()))
    if args.quick:
        return

    # 3. edit the policy over the console, reload, new verdict from the same process
    vm.sh("cat > /etc/enrollgate/policy.lua <<'EOF'\n" + EDITED_POLICY + "EOF")
    _, out = vm.sh("enrollgate check")
    vm.ok(f"policy.lua edited over the serial console; enrollgate check: {out.splitlines()[-1][:80]}")
    if args.reload == "hup":
        vm.sh(f"kill -HUP {pid}")
        how = f"kill -HUP {pid}"
    else:
        _, out = vm.sh("enrollgate reload")
        how = f"enrollgate reload ({out.strip()[:60]})"
    end = time.monotonic() + 20
    while True:
        st = vm.status()
        if st["generation"] != gen or time.monotonic() > end:
            break
        vm.sh("sleep 0.5")
    expect_eq("pid after reload", st["pid"], pid)
    expect_eq("generation after reload", st["generation"], gen + 1)
    expect_eq("last_reload", st["last_reload"], "ok")
    code, body = vm.request() or (None, "")
    expect_eq("status after the edit", code, 451)
    if EDITED_REASON not in body:
        raise Failure(f"451 without the edited reason: {body!r}")
    vm.ok(f"{how}: same pid {pid}, generation {gen} -> {st['generation']}, new verdict: 451 {body.strip()}")
    # the access record of that request reaches the log on the data partition (svlogd)
    end = time.monotonic() + 10
    while True:
        _, n = vm.sh("grep -c '\"status\":451' /var/log/enrollgate/current", check=False)
        if n.strip().isdigit() and int(n) >= 1:
            break
        if time.monotonic() > end:
            raise Failure("no access record with status 451 in /var/log/enrollgate/current")
        vm.sh("sleep 0.5")
    vm.ok(f"log: {n.strip()} access record(s) with status 451 in /var/log/enrollgate/current")

    # 4. persistence across a reboot
    vm.reboot("sync; reboot")
    code, body = vm.boot("reboot")
    expect_eq("status after reboot", code, 451)
    _, grep = vm.sh(f"grep -c '{TEST_HOST}' /etc/enrollgate/policy.lua")
    st = vm.status()
    expect_eq("generation of the freshly started daemon", st["generation"], 1)
    pid = st["pid"]
    vm.ok(f"after reboot the edit persisted ({grep} lines name {TEST_HOST}), verdict 451, "
          f"new daemon pid {pid} generation 1")

    # 4b. update: power off, write the newer image's MBR, boot and root partitions over the disk
    # (what docs/appliance.md tells an operator to do), power on: the data partition is kept
    if args.update:
        vm.power_off()
        with open(args.update, "rb") as new:
            head = new.read(UPDATE_BYTES)
        with open(vm.disk, "r+b") as disk:
            if disk.read(UPDATE_BYTES)[446:510] != head[446:510]:
                raise Failure("the update image's partition table differs: data would not survive")
            disk.seek(0)
            disk.write(head)
        want_sig = head[440:444][::-1].hex()
        vm.ok(f"powered off; wrote the first {UPDATE_BYTES >> 20} MiB of {args.update} over the disk "
              f"(disk signature now {want_sig})")
        vm.power_on()
        code, body = vm.boot("boot after the update")
        expect_eq("status after the update", code, 451)
        _, sig = vm.sh(f"hexdump -s 440 -n 4 -e '1/4 \"%08x\"' {vm.guest_disk}")
        expect_eq("disk signature seen by the guest", sig.strip(), want_sig)
        _, built = vm.sh(". /usr/lib/enrollgate-appliance/release; echo $BUILD_DATE")
        st = vm.status()
        pid = st["pid"]
        vm.ok(f"updated system (built {built}) kept the data partition: edit still answers 451, pid {pid}")

    # 5. the supervisor restarts a daemon that dies; its start makes keys/ the daemon's own again
    vm.sh("touch /etc/enrollgate/keys/stray.pem && chmod 0644 /etc/enrollgate/keys/stray.pem")
    vm.sh(f"kill -KILL {pid}")
    end = time.monotonic() + 30
    while True:
        _, out = vm.sh("pidof enrollgate", check=False)
        if out.strip() and out.split() != [str(pid)]:
            break
        if time.monotonic() > end:
            raise Failure("runsv did not restart enrollgate within 30 s")
        vm.sh("sleep 0.5")
    code, _ = vm.wait_answer(30)
    expect_eq("status after the restart", code, 451)
    vm.ok(f"SIGKILL to pid {pid}: runsv restarted enrollgate as pid {out.split()[0]}, answering 451")
    _, stray = vm.sh("stat -c '%a %U' /etc/enrollgate/keys/stray.pem")
    expect_eq("a root-owned 0644 file in keys/ after the service start", stray, "600 enrollgate")
    vm.sh("rm -f /etc/enrollgate/keys/stray.pem")
    vm.ok("keys/: a file root left readable is 0600 and owned by enrollgate after the service start")

    # 6. factory reset: the command, or the boot menu entry (what one does without a password)
    if args.reset == "command":
        vm.reboot("factory-reset --yes")
    else:
        vm.reboot("sync; reboot")
        # syslinux's SAY line, then its prompt (under UEFI every character comes wrapped in
        # cursor-positioning escapes: hence loose())
        vm.expect(loose("all settings first."), args.boot_timeout)
        vm.expect(loose("boot:"), 30)
        vm.type("factory-reset\r")
    code, body = vm.boot(f"factory reset ({args.reset})")
    expect_eq("status after factory reset", code, 403)
    rc, _ = vm.sh(f"grep -q '{TEST_HOST}' /etc/enrollgate/policy.lua", check=False)
    expect_eq("edit gone after factory reset (grep status)", rc, 1)
    _, how = vm.sh("tail -n 1 /data/log/factory-reset.log")
    vm.ok(f"factory reset: bundled policy back (403 {body.strip()[:50]}); {how.strip()[:60]}")

    # 7. clean poweroff
    vm.power_off()
    vm.ok("poweroff: QEMU exited")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", required=True)
    ap.add_argument("--firmware", choices=("bios", "uefi"), default="bios")
    ap.add_argument("--disk", choices=("virtio", "nvme", "sata", "usb"), default="virtio")
    ap.add_argument("--nic", choices=("virtio", "e1000e"), default="virtio")
    ap.add_argument("--reload", choices=("hup", "command"), default="hup")
    ap.add_argument("--reset", choices=("command", "bootmenu"), default="command",
                    help="factory reset with the factory-reset command, or the boot prompt's entry")
    ap.add_argument("--quick", action="store_true", help="boot and layout checks only")
    ap.add_argument("--update", metavar="IMG", help="after the reboot check, update to IMG as "
                    "docs/appliance.md says (first 177 MiB over the disk) and check the data stayed")
    ap.add_argument("--production", action="store_true",
                    help="a production image: boot, then check that the serial console asks for a login")
    ap.add_argument("--boot-timeout", type=float, default=180, help="seconds per boot")
    ap.add_argument("--timeout", type=int, default=900, help="seconds for the whole run")
    ap.add_argument("--logdir", default=".")
    ap.add_argument("--name", help="label for output and the serial log (default FIRMWARE-DISK)")
    args = ap.parse_args()
    args.name = args.name or f"{args.firmware}-{args.disk}"
    os.makedirs(args.logdir, exist_ok=True)
    if args.firmware == "uefi" and not os.path.exists(OVMF_CODE):
        sys.exit(f"boottest: {OVMF_CODE} is missing (apt-get install ovmf)")
    # SIGTERM and the overall deadline must reach the finally: below, which kills QEMU
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))

    def deadline(*_):
        raise Failure(f"the whole run took longer than {args.timeout}s")
    signal.signal(signal.SIGALRM, deadline)
    signal.alarm(args.timeout)
    workdir = tempfile.mkdtemp(prefix="enrollgate-boottest-")
    vm = None
    rc = 1
    try:
        vm = Appliance(args, workdir)
        run(args, vm)
        times = ", ".join(f"{t:.1f}s" for t in vm.boot_times)
        vm.log(f"PASS ({len(vm.boot_times)} boots to listening: {times}; "
               f"total {time.monotonic() - vm.t0:.0f}s)")
        rc = 0
    except Failure as e:
        if vm:
            vm.log(f"FAIL: {e}")
            # the log, not vm.buf: expect() consumes what it matched, so buf may be empty
            vm.serial_log.flush()
            path = vm.serial_log.name
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - 4000))
                tail = re.sub(rb"\x1b\[[0-9;=?]*[A-Za-z]", b"", f.read()).replace(b"\r", b"")
            print(f"--- serial console tail ({path}, escapes removed) ---\n"
                  f"{tail.decode(errors='replace')[-2500:]}\n--- end of serial console tail ---", flush=True)
        else:
            print(f"boottest: FAIL: {e}", flush=True)
    finally:
        if vm:
            vm.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
