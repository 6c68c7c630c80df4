#!/bin/bash
# ACME through the proxy: lego (Go client) obtains a certificate from pebble with a real HTTP-01
# validation. lego talks to https://ca.test:14000/dir through HTTPS_PROXY (CONNECT tunnel); Go clients
# never proxy loopback names, hence ca.test from the private hosts file. pebble validates by fetching
# http://a.example.com:5002/.well-known/acme-challenge/... from lego directly (DNS stub -> 127.0.0.1).
# Usage: peer_acme_lego.sh ENROLLGATE_BINARY SRC_DIR   (see lib.sh for PROXY_KIND / PROXY_CMD)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
EG_NEED=(pebble pebble-challtestsrv lego)
. "$HERE/lib.sh"
eg_enter "$@"
. "$HERE/acme_common.sh"

eg_start_proxy
acme_start

DOM=a.example.com
L=$EG_T/lego
rc=0
eg_run 40 env HTTPS_PROXY="$PROXY_URL" LEGO_CA_CERTIFICATES="$ACME_TLS_CA" \
  lego --email t@example.com --accept-tos --path "$L" --server "$ACME_DIR_URL" \
  --domains "$DOM" --http --http.port 127.0.0.1:5002 --key-type ec256 run >"$EG_T/lego.log" 2>&1 || rc=$?
[[ $rc -eq 0 ]] || eg_fail "lego run exited with $rc"
eg_ok "lego run succeeded"
grep -q "Server responded with a certificate" "$EG_T/lego.log" || eg_fail "lego log lacks the issuance line"

acme_check_cert "$L/certificates/$DOM.crt" "$L/certificates/$DOM.issuer.crt" "$DOM"

# pebble really validated the challenge (not PEBBLE_VA_ALWAYS_VALID): it fetched it from lego.
{ grep -q "Attempting to validate w/ HTTP: http://$DOM:5002/" "$EG_T/pebble.log" \
  && grep -q "set VALID by completed challenge" "$EG_T/pebble.log"; } || eg_fail "pebble log shows no HTTP-01 validation"
eg_ok "pebble validated the HTTP-01 challenge against lego"

eg_assert_proxied "the CONNECT tunnel to ca.test:14000" "CONNECT ca.test:14000" \
  method=CONNECT host=ca.test port=14000 status=200 verdict=allow

# Policy: a CA name outside the allowlist (denied.example.org resolves to 127.0.0.1 here, pebble
# listens there) is refused by the proxy, so lego fails before any TLS.
rc=0
eg_run 20 env HTTPS_PROXY="$PROXY_URL" LEGO_CA_CERTIFICATES="$ACME_TLS_CA" \
  lego --email t@example.com --accept-tos --path "$EG_T/lego3" --server https://denied.example.org:14000/dir \
  --domains c.example.com --http --http.port 127.0.0.1:5002 --key-type ec256 run >"$EG_T/lego-denied.log" 2>&1 || rc=$?
[[ $rc -ne 0 && $rc -ne 124 ]] || eg_fail "lego through the proxy to a non-allowlisted CA: rc $rc (expected a fast failure)"
grep -q "denied.example.org" "$EG_T/lego-denied.log" || eg_fail "lego failed for another reason: $(tail -n 2 "$EG_T/lego-denied.log")"
eg_assert_proxied "the refused CONNECT to denied.example.org:14000" 'filtered domain "denied.example.org"' \
  method=CONNECT host=denied.example.org port=14000 status=403 verdict=deny
if [[ $PROXY_KIND == enrollgate ]]; then
  n=$(eg_access_count method=CONNECT host=denied.example.org status=200)
  [[ $n -eq 0 ]] || eg_fail "a CONNECT to denied.example.org was answered 200"
fi
eg_ok "CONNECT to a non-allowlisted CA name refused, lego fails (rc $rc)"

# Negative control: with the proxy's port closed, the same client must fail (so success above really
# depended on the proxy rather than a direct connection).
rc=0
eg_run 20 env HTTPS_PROXY=http://127.0.0.1:9 LEGO_CA_CERTIFICATES="$ACME_TLS_CA" \
  lego --email t@example.com --accept-tos --path "$EG_T/lego2" --server "$ACME_DIR_URL" \
  --domains b.example.com --http --http.port 127.0.0.1:5002 --key-type ec256 run >"$EG_T/lego-noproxy.log" 2>&1 || rc=$?
[[ $rc -ne 0 ]] || eg_fail "lego succeeded with a dead proxy: it did not use HTTPS_PROXY"
grep -q "proxyconnect" "$EG_T/lego-noproxy.log" || eg_fail "lego did not fail at the proxy connection"
[[ ! -e "$EG_T/lego2/certificates/b.example.com.crt" ]] || eg_fail "certificate issued with a dead proxy"
eg_ok "lego fails when the proxy is unreachable (rc $rc)"

eg_pass
