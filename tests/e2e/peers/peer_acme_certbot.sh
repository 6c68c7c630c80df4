#!/bin/bash
# ACME through the proxy: certbot (Python requests) obtains a certificate from pebble with a real
# HTTP-01 validation (certbot --standalone serves the challenge on 127.0.0.1:5002; pebble fetches it
# directly). certbot's ACME traffic goes through HTTPS_PROXY as a CONNECT tunnel to ca.test:14000.
# Usage: peer_acme_certbot.sh ENROLLGATE_BINARY SRC_DIR   (see lib.sh for PROXY_KIND / PROXY_CMD)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
EG_NEED=(pebble pebble-challtestsrv certbot)
. "$HERE/lib.sh"
eg_enter "$@"
. "$HERE/acme_common.sh"

eg_start_proxy
acme_start

DOM=d.example.com
C=$EG_T/certbot
certbot_run() { # PROXY DOMAIN LOGFILE
  eg_run 45 env HTTPS_PROXY="$1" REQUESTS_CA_BUNDLE="$ACME_TLS_CA" \
    certbot certonly --standalone --non-interactive --agree-tos --register-unsafely-without-email \
    --server "$ACME_DIR_URL" --http-01-address 127.0.0.1 --http-01-port 5002 -d "$2" \
    --key-type ecdsa --config-dir "$C/conf" --work-dir "$C/work" --logs-dir "$C/logs" \
    --no-random-sleep-on-renew --max-log-backups 0 >"$3" 2>&1
}
rc=0
certbot_run "$PROXY_URL" "$DOM" "$EG_T/certbot.log" || rc=$?
[[ $rc -eq 0 ]] || eg_fail "certbot exited with $rc"
grep -q "Successfully received certificate" "$EG_T/certbot.log" || eg_fail "certbot output lacks success line"
eg_ok "certbot certonly succeeded"

acme_check_cert "$C/conf/live/$DOM/cert.pem" "$C/conf/live/$DOM/chain.pem" "$DOM"
{ grep -q "Attempting to validate w/ HTTP: http://$DOM:5002/" "$EG_T/pebble.log" \
  && grep -q "set VALID by completed challenge" "$EG_T/pebble.log"; } || eg_fail "pebble log shows no HTTP-01 validation"
eg_ok "pebble validated the HTTP-01 challenge against certbot"

eg_assert_proxied "the CONNECT tunnel to ca.test:14000" "CONNECT ca.test:14000" \
  method=CONNECT host=ca.test port=14000 status=200 verdict=allow

# Negative control: a dead proxy must make certbot fail (it really used HTTPS_PROXY).
rc=0
certbot_run http://127.0.0.1:9 e.example.com "$EG_T/certbot-noproxy.log" || rc=$?
[[ $rc -ne 0 ]] || eg_fail "certbot succeeded with a dead proxy: it did not use HTTPS_PROXY"
grep -q "Cannot connect to proxy" "$C/logs/letsencrypt.log" || eg_fail "certbot did not fail at the proxy"
eg_ok "certbot fails when the proxy is unreachable (rc $rc)"

eg_pass
