# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Shared ACME setup for peer_acme_*.sh (sourced after eg_enter): TLS CA for pebble's listener, a DNS
# stub (pebble-challtestsrv answers every A query with 127.0.0.1 so pebble really fetches the HTTP-01
# challenge from the client on 127.0.0.1:5002) and pebble itself on 127.0.0.1:14000.

ACME_DIR_URL=https://ca.test:14000/dir

acme_start() {
  local d=$EG_T/acme
  mkdir -p "$d"
  # TLS CA + server certificate for pebble's HTTPS listener (pebble as packaged has no test certs).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=enrollgate test TLS CA" \
    -keyout "$d/tls-ca.key" -out "$d/tls-ca.pem" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=ca.test" \
    -keyout "$d/srv.key" -out "$d/srv.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,DNS:ca.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >"$d/srv.ext"
  openssl x509 -req -in "$d/srv.csr" -CA "$d/tls-ca.pem" -CAkey "$d/tls-ca.key" -CAcreateserial -days 2 \
    -extfile "$d/srv.ext" -out "$d/srv.pem" 2>/dev/null
  cat >"$d/pebble.json" <<EOF
{"pebble":{"listenAddress":"127.0.0.1:14000","managementListenAddress":"127.0.0.1:15000",
 "certificate":"$d/srv.pem","privateKey":"$d/srv.key","httpPort":5002,"tlsPort":5001,
 "ocspResponderURL":"","externalAccountBindingRequired":false}}
EOF
  ACME_TLS_CA=$d/tls-ca.pem

  eg_bg challtestsrv pebble-challtestsrv -dns01 127.0.0.1:8053 -http01 "" -https01 "" -tlsalpn01 "" \
    -management 127.0.0.1:8055 -defaultIPv6 ""
  local cpid=$EG_LAST_PID
  # PEBBLE_VA_NOSLEEP: no random validation delay; PEBBLE_WFE_NONCEREJECT=0: no deliberate badNonce errors.
  eg_bg pebble env PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
    pebble -strict -config "$d/pebble.json" -dnsserver 127.0.0.1:8053
  local ppid=$EG_LAST_PID
  eg_wait_listen 8055 10 "$cpid"
  eg_wait_listen 14000 15 "$ppid"
  eg_wait_http "https://127.0.0.1:14000/dir" 10 --cacert "$ACME_TLS_CA"
  eg_log "pebble up"
}

# acme_check_cert CERT ISSUER DOMAIN -- the issued certificate parses, names DOMAIN and chains to
# pebble's (per-run, random) root, fetched from its management interface.
acme_check_cert() {
  local crt=$1 issuer=$2 dom=$3
  [[ -s "$crt" ]] || eg_fail "no certificate written at $crt"
  openssl x509 -in "$crt" -noout >/dev/null 2>&1 || eg_fail "openssl x509 cannot parse $crt"
  local san
  san=$(openssl x509 -in "$crt" -noout -ext subjectAltName 2>/dev/null)
  grep -q "DNS:$dom" <<<"$san" || eg_fail "certificate SAN lacks DNS:$dom: $san"
  eg_ok "certificate parses and names DNS:$dom"
  curl -s -m 5 --cacert "$ACME_TLS_CA" -o "$EG_T/acme/pebble-root.pem" https://127.0.0.1:15000/roots/0 \
    || eg_fail "cannot fetch pebble root"
  local untrusted=()
  # The leaf file may hold the whole chain (lego bundles by default); the issuer file is the intermediate.
  [[ -n "$issuer" && -s "$issuer" ]] && untrusted=(-untrusted "$issuer")
  openssl verify -CAfile "$EG_T/acme/pebble-root.pem" "${untrusted[@]}" "$crt" >"$EG_T/verify.out" 2>&1 \
    || eg_fail "certificate does not chain to this pebble's root: $(cat "$EG_T/verify.out")"
  eg_ok "certificate chains to this run's pebble root"
}
