#!/bin/bash
# The CMP proxy (cmp.lua) between the `openssl cmp` client and `openssl cmp` mock CAs, in a private
# network namespace. Messages that pass (ir, cr, p10cr, kur, rr, genm, polling; MAC and signature
# protection; the RFC 9480 path, the default alias and the legacy path) come back with exactly the
# mock's certificate; every refusal (wrong secret, unknown keyId, unprotected, unknown issuer,
# revoked signer, missing CRL, no issuers, refused key, refused type, junk, dead or silent CA) is a
# CMP error message the client can read (-unprotected_errors), with the expected failInfo, and the
# mock CA never sees the refused messages (its request count proves it).
# Usage: cmp_proxy.sh ENROLLGATE_BINARY SRC_DIR
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
EG_NEED=()
. "$HERE/lib.sh"
eg_enter "$@"

# ---- test PKI (P-256): root, the mock's signing certificate, clients, a CRL revoking one ----
P=$EG_T/pki
mkdir -p "$P"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
for n in root other-root; do
  key "$P/$n.key"
  openssl req -x509 -new -key "$P/$n.key" -subj "/CN=enrollgate-cmp-$n" -days 2 -out "$P/$n.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
done
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' >"$P/ee.ext"
cert() { # NAME ISSUER
  key "$P/$1.key"
  openssl req -new -key "$P/$1.key" -subj "/CN=cmp-$1" -out "$P/$1.csr"
  openssl x509 -req -in "$P/$1.csr" -CA "$P/$2.crt" -CAkey "$P/$2.key" -CAcreateserial -days 2 \
    -extfile "$P/ee.ext" -out "$P/$1.crt" 2>/dev/null
}
cert srv root; cert client root; cert revoked root; cert stranger other-root; cert new root
openssl req -new -key "$P/new.key" -subj /CN=device1 -out "$P/p10.csr"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$P/weak.key" 2>/dev/null
mkdir -p "$P/ca"; : >"$P/ca/index.txt"; echo 01 >"$P/ca/crlnumber"
cat >"$P/ca.cnf" <<EOF
[ca]
default_ca = d
[d]
database = $P/ca/index.txt
crlnumber = $P/ca/crlnumber
certificate = $P/root.crt
private_key = $P/root.key
default_md = sha256
default_crl_days = 2
EOF
openssl ca -config "$P/ca.cnf" -revoke "$P/revoked.crt" 2>/dev/null
openssl ca -config "$P/ca.cnf" -gencrl -out "$P/crl.pem" 2>/dev/null
cp "$P/crl.pem" "$P/crl-b.pem"

# ---- mock CAs: 8082 answers at once, 8083 makes the client poll once; 8084 accepts and never answers;
# 8085 reads the message, counts it and breaks its answer: at /pkix/ the head promises 400 bytes
# and 10 come before the close; at /big/ the head promises 2 MiB (over the 1 MiB accepted); at
# /stall/ 10 of 400 bytes come, then nothing for 5 s (past the 2 s response timeout) ----
MOCK=(-srv_ref 1234 -srv_secret pass:test1234 -srv_cert "$P/srv.crt" -srv_key "$P/srv.key"
      -srv_trusted "$P/root.crt" -rsp_cert "$P/new.crt" -rsp_capubs "$P/root.crt" -accept_unprotected)
eg_bg mock openssl cmp -port 8082 "${MOCK[@]}"
MOCK_PID=$EG_LAST_PID
eg_bg mockpoll openssl cmp -port 8083 "${MOCK[@]}" -poll_count 1 -check_after 0
eg_bg silent python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8084)); s.listen(16); held = []
while True:
    c, _ = s.accept(); held.append(c)'
eg_bg cutoff python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8085)); s.listen(16); n = 0
while True:
    c, _ = s.accept(); data = b""
    while b"\r\n\r\n" not in data:
        data += c.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(body) < length:
        body += c.recv(65536)
    n += 1; print("received", n, head.split(b" ")[1].decode(), flush=True)
    size = b"2097152" if b" /big/" in head else b"400"
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/pkixcmp\r\nContent-Length: " + size + b"\r\n\r\n" + b"0" * 10)
    if b" /stall/" in head:
        time.sleep(5)
    c.close()'
CUTOFF_LOG=$EG_T/cutoff.log
eg_wait_listen 8082 10 "$MOCK_PID"
eg_wait_listen 8083 10
eg_wait_listen 8084 10
eg_wait_listen 8085 10

# ---- enrollgate with cmp.lua ----
C=$EG_T/conf
mkdir -p "$C"
cp "$SRC/tests/e2e/conf/enrollgate.lua" "$SRC/tests/e2e/conf/policy.lua" "$C/"
printf 'test1234\n' >"$C/mac-1234.secret"
cat >"$C/cmp.lua" <<EOF
local mock = { "http://127.0.0.1:8082/pkix/" }
return {
  listen = { "127.0.0.1:8829" },
  legacy_prefix = "/ejbca/publicweb/cmp/",
  default_alias = "mac",
  timeouts = { connect = 2, response = 2 },
  down_hold = 0,
  aliases = {
    mac = { upstreams = mock, protection = { "mac" }, mac = { ["1234"] = { file = "mac-1234.secret" } } },
    sig = { upstreams = mock, backend = "http", protection = { "signature" },
            signature = { issuers = "$P/root.crt", crls = "$P/crl.pem" } },
    poll = { upstreams = { "http://127.0.0.1:8083/pkix/" }, protection = { "mac" }, mac = { ["1234"] = "test1234" } },
    nochain = { upstreams = mock, protection = { "signature" } },
    crlbroken = { upstreams = mock, protection = { "signature" },
                  signature = { issuers = "$P/root.crt", crls = "$P/crl-b.pem", crl_refresh = 1 } },
    nocrl = { upstreams = mock, protection = { "signature" },
              signature = { issuers = "$P/root.crt", crls = "$P/no-crls-yet/" } },
    ironly = { upstreams = mock, types = { "ir", "certConf" }, mac = { ["1234"] = "test1234" } },
    dead = { upstreams = { "http://127.0.0.1:9/pkix/" }, mac = { ["1234"] = "test1234" } },
    failover = { upstreams = { "http://127.0.0.1:9/pkix/", mock[1] }, mac = { ["1234"] = "test1234" } },
    silent = { upstreams = { "http://127.0.0.1:8084/pkix/" }, mac = { ["1234"] = "test1234" } },
    cutoff = { upstreams = { "http://127.0.0.1:8085/pkix/", mock[1] }, mac = { ["1234"] = "test1234" } },
    toobig = { upstreams = { "http://127.0.0.1:8085/big/", mock[1] }, mac = { ["1234"] = "test1234" } },
    stall = { upstreams = { "http://127.0.0.1:8085/stall/", mock[1] }, mac = { ["1234"] = "test1234" } },
  },
  on_message = require("policies.cmp").policy{ aliases = { ["*"] = {} } },
}
EOF
"$EG_BIN" check -c "$C" >"$EG_T/check.log" 2>&1 || eg_fail "enrollgate check: $(cat "$EG_T/check.log")"
PROXY_LOG=$EG_T/proxy.log
"$EG_BIN" run -c "$C" --listen 127.0.0.1:$PROXY_PORT --admin 127.0.0.1:$ADMIN_PORT 2>"$PROXY_LOG" >/dev/null 8>&- 9>&- &
EG_PIDS+=($!)
EG_PID=$!
EG_PROXY_PID=$EG_PID   # eg_pass stops it with SIGTERM and wants a clean exit
eg_wait_listen 8829 10 $EG_PID
eg_ok "enrollgate check accepts cmp.lua; CMP listening on 127.0.0.1:8829"

S=127.0.0.1:8829
MAC=(-ref 1234 -secret pass:test1234 -recipient /CN=cmp-srv)
SIG=(-cert "$P/client.crt" -key "$P/client.key" -trusted "$P/root.crt")
REQ=(-newkey "$P/new.key" -subject /CN=device1)
cmpc() { # LOG PATH ARGS... -- the openssl cmp client against enrollgate
  local log=$1 path=$2; shift 2
  eg_run 20 openssl cmp -server "$S" -path "$path" -msg_timeout 10 -total_timeout 15 -unprotected_errors "$@" \
    >"$EG_T/$log.log" 2>&1
}
mock_count() { grep -c "1st line: POST /pkix/" "$EG_T/$1.log" || true; }
same_cert() { cmp -s <(openssl x509 -in "$1" -outform DER) <(openssl x509 -in "$2" -outform DER); }
ok_enroll() { # NAME: the client succeeded and got the mock's certificate
  same_cert "$EG_T/$1.crt" "$P/new.crt" || eg_fail "$1: no certificate or not the mock's: $(tail -n 5 "$EG_T/$1.log")"
}

# ---- messages that pass ----
cmpc ir .well-known/cmp/p/mac -cmd ir "${MAC[@]}" "${REQ[@]}" -certout "$EG_T/ir.crt" || eg_fail "ir (MAC): $(tail -n 5 "$EG_T/ir.log")"
ok_enroll ir
eg_ok "ir with MAC protection at /.well-known/cmp/p/mac: the mock's certificate"
cmpc cr .well-known/cmp/p/sig -cmd cr "${SIG[@]}" "${REQ[@]}" -certout "$EG_T/cr.crt" || eg_fail "cr: $(tail -n 5 "$EG_T/cr.log")"
ok_enroll cr
eg_ok "cr with signature protection (signer checked against issuers and CRL)"
cmpc p10cr ejbca/publicweb/cmp/sig -cmd p10cr "${SIG[@]}" -csr "$P/p10.csr" -certout "$EG_T/p10cr.crt" \
  || eg_fail "p10cr: $(tail -n 5 "$EG_T/p10cr.log")"
ok_enroll p10cr
eg_ok "p10cr at the legacy path /ejbca/publicweb/cmp/sig"
cmpc kur .well-known/cmp/p/sig -cmd kur -cert "$P/new.crt" -key "$P/new.key" -trusted "$P/root.crt" -newkey "$P/new.key" \
  -certout "$EG_T/kur.crt" || eg_fail "kur: $(tail -n 5 "$EG_T/kur.log")"
ok_enroll kur
eg_ok "kur signed with the certificate being renewed"
cmpc rr .well-known/cmp/p/sig -cmd rr "${SIG[@]}" -oldcert "$P/new.crt" -revreason 1 || eg_fail "rr: $(tail -n 5 "$EG_T/rr.log")"
grep -q "received RP" "$EG_T/rr.log" || eg_fail "rr: no RP"
eg_ok "rr answered with RP"
cmpc genm .well-known/cmp -cmd genm "${MAC[@]}" -infotype signKeyPairTypes || eg_fail "genm: $(tail -n 5 "$EG_T/genm.log")"
grep -q "received GENP" "$EG_T/genm.log" || eg_fail "genm: no GENP"
eg_ok "genm at /.well-known/cmp (the default alias)"
cmpc poll .well-known/cmp/p/poll -cmd ir "${MAC[@]}" "${REQ[@]}" -certout "$EG_T/poll.crt" || eg_fail "polling: $(tail -n 5 "$EG_T/poll.log")"
ok_enroll poll
grep -q "sending POLLREQ" "$EG_T/poll.log" || eg_fail "polling: the client never polled"
eg_ok "ir with polling (pollReq/pollRep relayed)"
# the other protection for ir and cr: signature for ir, MAC for cr
cmpc ir-sig .well-known/cmp/p/sig -cmd ir "${SIG[@]}" "${REQ[@]}" -certout "$EG_T/ir-sig.crt" \
  || eg_fail "ir (signature): $(tail -n 5 "$EG_T/ir-sig.log")"
ok_enroll ir-sig
cmpc cr-mac .well-known/cmp/p/mac -cmd cr "${MAC[@]}" "${REQ[@]}" -certout "$EG_T/cr-mac.crt" \
  || eg_fail "cr (MAC): $(tail -n 5 "$EG_T/cr-mac.log")"
ok_enroll cr-mac
eg_ok "ir with signature protection, cr with MAC protection"
# failover: the alias' first CA refuses connections, the second (the mock) answers
cmpc failover .well-known/cmp/p/failover -cmd genm "${MAC[@]}" -infotype signKeyPairTypes \
  || eg_fail "failover: $(tail -n 5 "$EG_T/failover.log")"
grep -q "received GENP" "$EG_T/failover.log" || eg_fail "failover: no GENP"
eg_ok "failover: genm answered by the alias' second CA"
# ir+certConf, cr+certConf, p10cr+certConf, kur+certConf, rr, genm; ir+certConf, cr+certConf (the
# other protection); genm (failover)
want=15
[[ $(mock_count mock) -eq $want ]] || eg_fail "mock CA received $(mock_count mock) requests, expected $want"
[[ $(mock_count mockpoll) -eq 3 ]] || eg_fail "polling mock received $(mock_count mockpoll) requests, expected 3"
eg_ok "mock CAs received exactly the $want + 3 accepted messages"

# ---- refusals: a CMP error message with the right failInfo; nothing reaches the CA ----
refused() { # NAME FAILINFO TEXT PATH ARGS... -- the client fails with a readable CMP error
  local name=$1 fi=$2 text=$3 path=$4 rc=0; shift 4
  cmpc "$name" "$path" "$@" -certout "$EG_T/$name.crt" || rc=$?
  [[ $rc -ne 0 ]] || eg_fail "$name: the client succeeded"
  [[ ! -s "$EG_T/$name.crt" ]] || eg_fail "$name: a certificate was written"
  [[ $rc -ne 124 ]] || eg_fail "$name: the client timed out"
  grep -q "received ERROR" "$EG_T/$name.log" || eg_fail "$name: no CMP error message: $(tail -n 5 "$EG_T/$name.log")"
  grep -q "PKIFailureInfo: $fi" "$EG_T/$name.log" || eg_fail "$name: failInfo is not $fi: $(grep -m1 PKIFailureInfo "$EG_T/$name.log")"
  grep -qF "$text" "$EG_T/$name.log" || eg_fail "$name: text '$text' missing: $(grep -m1 StatusString "$EG_T/$name.log")"
  eg_ok "$name: CMP error, failInfo $fi, \"$text\""
}
refused wrong-secret badRequest "MAC verification failed" .well-known/cmp/p/mac -cmd ir -ref 1234 -secret pass:wrong \
  -recipient /CN=cmp-srv "${REQ[@]}"
refused unknown-kid badRequest "MAC verification failed" .well-known/cmp/p/mac -cmd ir -ref 9999 -secret pass:test1234 \
  -recipient /CN=cmp-srv "${REQ[@]}"
refused unprotected badRequest "message protection required" .well-known/cmp/p/mac -cmd ir -unprotected_requests \
  -recipient /CN=cmp-srv "${REQ[@]}"
refused mac-on-sig badRequest "not accepted" .well-known/cmp/p/sig -cmd ir "${MAC[@]}" "${REQ[@]}"
refused stranger badRequest "not trusted" .well-known/cmp/p/sig -cmd cr -cert "$P/stranger.crt" -key "$P/stranger.key" \
  -trusted "$P/root.crt" "${REQ[@]}"
refused revoked badRequest "revoked" .well-known/cmp/p/sig -cmd cr -cert "$P/revoked.crt" -key "$P/revoked.key" \
  -trusted "$P/root.crt" "${REQ[@]}"
refused no-crl systemUnavail "revocation status" .well-known/cmp/p/nocrl -cmd cr "${SIG[@]}" "${REQ[@]}"
# CRLs that change into something unreadable: revocation unknown (not the old CRLs' "good") until
# a readable CRL is back; both noticed within crl_refresh (1 s)
cmpc crlb1 .well-known/cmp/p/crlbroken -cmd cr "${SIG[@]}" "${REQ[@]}" -certout "$EG_T/crlb1.crt" ||
  eg_fail "cr with the CRL readable: $(tail -n 5 "$EG_T/crlb1.log")"
printf -- '-----BEGIN X509 CRL-----\nMIIB\n' >"$P/crl-b.pem"; sleep 1.3
refused crl-unreadable systemUnavail "revocation status" .well-known/cmp/p/crlbroken -cmd cr "${SIG[@]}" "${REQ[@]}"
grep -q "CRLs changed and cannot be re-read" "$PROXY_LOG" || eg_fail "crl-unreadable: no warning in the log"
cp "$P/crl.pem" "$P/crl-b.pem"; touch -d '+2 seconds' "$P/crl-b.pem"; sleep 1.3
cmpc crlb2 .well-known/cmp/p/crlbroken -cmd cr "${SIG[@]}" "${REQ[@]}" -certout "$EG_T/crlb2.crt" ||
  eg_fail "cr with the CRL readable again: $(tail -n 5 "$EG_T/crlb2.log")"
want=$((want + 4))   # the two cr transactions that passed (cr + certConf each)
eg_ok "CRLs that changed and cannot be read: systemUnavail until readable CRLs are back"
refused no-chains systemUnavail "no issuers configured" .well-known/cmp/p/nochain -cmd cr "${SIG[@]}" "${REQ[@]}"
refused weak-key badRequest "RSA key size 1024" .well-known/cmp/p/mac -cmd ir "${MAC[@]}" -newkey "$P/weak.key" -subject /CN=device1
refused type-not-allowed badRequest "message type not accepted" .well-known/cmp/p/ironly -cmd genm "${MAC[@]}" -infotype signKeyPairTypes
[[ $(mock_count mock) -eq $want ]] || eg_fail "a refused message reached the mock CA ($(mock_count mock) requests)"
eg_ok "no refused message reached the mock CA (still $want requests)"

# CA side failures: quick systemUnavail for a dead CA, bounded time for a silent one
refused dead systemUnavail "CA not reachable" .well-known/cmp/p/dead -cmd genm "${MAC[@]}" -infotype signKeyPairTypes
t0=$(date +%s.%N)
refused silent systemUnavail "CA did not answer in time" .well-known/cmp/p/silent -cmd genm "${MAC[@]}" -infotype signKeyPairTypes
took=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
python3 -c "import sys; sys.exit(0 if $took < 8 else 1)" || eg_fail "silent CA: the answer took ${took}s (response timeout 2 s)"
eg_ok "silent CA answered as systemUnavail after ${took}s"
# a CA whose answer breaks off: HTTP 500, and the message is not sent to the alias' second CA
eg_run 20 openssl cmp -server 127.0.0.1:8082 -path pkix/ -cmd genm "${MAC[@]}" -infotype signKeyPairTypes \
  -reqout "$EG_T/genm.der" >"$EG_T/genm.log" 2>&1 || eg_fail "genm for the cut-off CA: $(tail -n 3 "$EG_T/genm.log")"
want=$((want + 1))   # (made against the mock itself)
before=$(mock_count mock)
n=0
for alias in cutoff toobig stall; do   # cut off, larger than accepted, stalled past the response timeout
  n=$((n + 1))
  t0=$(date +%s.%N)
  code=$(curl -s --max-time 15 -o /dev/null -w '%{http_code}' -H 'Content-Type: application/pkixcmp' \
    --data-binary @"$EG_T/genm.der" "http://127.0.0.1:8829/.well-known/cmp/p/$alias")
  took=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
  [[ $code == 500 ]] || eg_fail "answer broken ($alias): HTTP $code, not 500"
  [[ $(grep -c received "$CUTOFF_LOG") -eq $n ]] || eg_fail "answer broken ($alias): the breaking CA got $(grep -c received "$CUTOFF_LOG") messages, not $n"
  python3 -c "import sys; sys.exit(0 if $took < 4.5 else 1)" || eg_fail "answer broken ($alias): took ${took}s"
done
[[ $(mock_count mock) -eq $before ]] || eg_fail "answer broken: a message went on to the second CA"
eg_ok "answers cut off, too large, or stalled mid-body: HTTP 500 in bounded time, sent to no other CA"

# ---- HTTP level ----
code=$(curl -s -o "$EG_T/junk.der" -w '%{http_code} %{content_type}' -H 'Content-Type: application/pkixcmp' \
  --data-binary 'not a PKIMessage' http://$S/.well-known/cmp/p/mac)
[[ $code == "200 application/pkixcmp" ]] || eg_fail "junk body: $code"
openssl asn1parse -inform DER -in "$EG_T/junk.der" >"$EG_T/junk.txt" || eg_fail "junk body: the answer is not DER"
grep -q "cont \[ 23 \]" "$EG_T/junk.txt" || eg_fail "junk body: the answer is not an error message: $(head -n 20 "$EG_T/junk.txt")"
grep -q "UTF8STRING *:not a valid PKIMessage" "$EG_T/junk.txt" || eg_fail "junk body: no statusString: $(cat "$EG_T/junk.txt")"
# PKIStatusInfo: status 2 (rejection), and failInfo badRequest: bit 2, DER 03 02 05 20
grep -q "INTEGER *:02" "$EG_T/junk.txt" || eg_fail "junk body: status is not rejection"
od -An -tx1 -v "$EG_T/junk.der" | tr -d ' \n' | grep -q 03020520 || eg_fail "junk body: failInfo is not badRequest"
eg_ok "junk body: a DER CMP error message (body [23], rejection, badRequest, its text) with HTTP 200"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/pkixcmp' --data-binary x http://$S/.well-known/cmp/p/nosuch)
[[ $code == 404 ]] || eg_fail "unknown alias: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/pkixcmp' --data-binary x http://$S/ejbca/publicweb/cmp/Mac)
[[ $code == 404 ]] || eg_fail "alias names are case-sensitive: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' http://$S/.well-known/cmp/p/mac)
[[ $code == 405 ]] || eg_fail "GET: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: text/plain' --data-binary x http://$S/.well-known/cmp/p/mac)
[[ $code == 415 ]] || eg_fail "wrong content type: $code"
eg_ok "unknown alias 404, GET 405, wrong media type 415"
[[ $(mock_count mock) -eq $want ]] || eg_fail "the mock CA saw requests it should not have"

# ---- audit and metrics ----
# the log is buffered (flushed every 100 ms): give the last records a moment
for ((i = 0; i < 30; i++)); do
  n=$(grep -c '"event":"cmp"' "$PROXY_LOG" || true)
  [[ $n -ge 35 ]] && break
  sleep 0.1
done
[[ $n -ge 35 ]] || eg_fail "expected an audit record per message, found $n"
grep '"event":"cmp"' "$PROXY_LOG" | grep '"result":"signer_revoked"' | grep -q '"signer":"CN=cmp-revoked"' \
  || eg_fail "no audit record of the revoked signer"
grep '"event":"cmp"' "$PROXY_LOG" | grep '"type":"ir"' | grep '"result":"relayed"' | grep -q '"key_id":"1234"' \
  || eg_fail "no audit record of the relayed ir"
curl -s http://127.0.0.1:$ADMIN_PORT/metrics >"$EG_T/metrics.txt"
grep -q 'enrollgate_cmp_messages_total{alias="sig",type="cr",result="relayed"} 1' "$EG_T/metrics.txt" \
  || eg_fail "metrics: $(grep cmp_messages "$EG_T/metrics.txt" | head -n 5)"
eg_ok "audit records ($n) and metrics by alias, type and result"

# ---- reload: a new MAC secret and the operator's own wording are live for the next message, same process ----
printf 'rotated-secret\n' >"$C/mac-1234.secret"
mkdir -p "$C/policies"
sed 's/text = "MAC verification failed"/text = "MAC check failed (site wording)"/' "$SRC/lua/policies/errors.lua" \
  >"$C/policies/errors.lua"
kill -HUP "$EG_PID"
for ((i = 0; i < 50; i++)); do
  curl -s http://127.0.0.1:$ADMIN_PORT/status | grep -q '"generation":2' && break
  sleep 0.1
done
curl -s http://127.0.0.1:$ADMIN_PORT/status | grep -q '"generation":2' || eg_fail "no generation 2 after SIGHUP"
refused after-reload badRequest "MAC check failed (site wording)" .well-known/cmp/p/mac -cmd ir "${MAC[@]}" "${REQ[@]}"
[[ $(mock_count mock) -eq $want ]] || eg_fail "the message with the old secret reached the mock CA"
kill -0 "$EG_PID" || eg_fail "enrollgate is gone after the reload"
eg_ok "after SIGHUP the rotated MAC secret and policies/errors.lua of the configuration are in force (same pid $EG_PID)"
PROXY_KIND=enrollgate eg_pass
