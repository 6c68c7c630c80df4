#!/bin/bash
# tests/vectors/cmp/make-vectors.sh: regenerate the CMP test vectors of tests/unit/test_cmp.c.
# Everything comes from OpenSSL: a test PKI (P-256, valid 10 years), CRLs made with `openssl ca`,
# and the request messages the `openssl cmp` client sends, captured with -reqout while it talks
# to its built-in mock server (-use_mock_srv: no network). The files are committed; run this only
# to change them (the messages carry fresh nonces and transactionIDs each time).
#   pki/root.crt            issuer of every client certificate below
#   pki/other-root.crt      an unrelated root (a "wrong issuer" trust store)
#   pki/crl.pem             root's CRL, valid 10 years, revoking pki/revoked.crt
#   pki/crl-stale.pem       root's CRL whose nextUpdate is in the past
#   *.der                   requests: <type>-<protection>[-variant].der
set -euo pipefail
cd "$(dirname "$0")"
rm -rf pki ./*.der
mkdir -p pki
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

for n in root other-root; do
  key "pki/$n.key"
  openssl req -x509 -new -key "pki/$n.key" -subj "/CN=enrollgate test $n" -days 3650 -out "pki/$n.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
done
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' >"$W/ee.ext"
cert() { # NAME ISSUER
  key "pki/$1.key"
  openssl req -new -key "pki/$1.key" -subj "/CN=cmp-$1" -out "$W/$1.csr"
  openssl x509 -req -in "$W/$1.csr" -CA "pki/$2.crt" -CAkey "pki/$2.key" -CAcreateserial -days 3650 \
    -extfile "$W/ee.ext" -out "pki/$1.crt" 2>/dev/null
}
cert client root; cert revoked root; cert stranger other-root; cert new root
openssl req -new -key pki/new.key -subj /CN=device1 -addext subjectAltName=DNS:device1.example.com -out pki/p10.csr
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out pki/weak.key 2>/dev/null

# CRLs from a minimal `openssl ca` database
mkdir -p "$W/ca"; : >"$W/ca/index.txt"; echo 01 >"$W/ca/crlnumber"
cat >"$W/ca.cnf" <<EOF
[ca]
default_ca = d
[d]
database = $W/ca/index.txt
crlnumber = $W/ca/crlnumber
certificate = pki/root.crt
private_key = pki/root.key
default_md = sha256
default_crl_days = 3650
EOF
openssl ca -config "$W/ca.cnf" -revoke pki/revoked.crt -crl_reason keyCompromise 2>/dev/null
openssl ca -config "$W/ca.cnf" -gencrl -out pki/crl.pem 2>/dev/null
openssl ca -config "$W/ca.cnf" -gencrl -crl_lastupdate 20200101000000Z -crl_nextupdate 20200201000000Z \
  -out pki/crl-stale.pem 2>/dev/null
# the mock signs its answers with a throwaway certificate: only the requests are kept
key "$W/srv.key"
openssl req -x509 -new -key "$W/srv.key" -subj /CN=cmp-srv -days 1 -out "$W/srv.crt"
M=(-use_mock_srv -srv_ref 1234 -srv_secret pass:test1234 -srv_cert "$W/srv.crt" -srv_key "$W/srv.key"
   -srv_trusted pki/root.crt -rsp_cert pki/new.crt -rsp_capubs pki/root.crt -accept_unprotected)
MAC=(-ref 1234 -secret pass:test1234 -recipient "/CN=cmp-srv")
SIG=(-cert pki/client.crt -key pki/client.key -trusted "$W/srv.crt")
REQ=(-newkey pki/new.key -subject /CN=device1 -sans device1.example.com)
run() { openssl cmp "${M[@]}" "$@" -certout "$W/out.crt" >/dev/null 2>&1 || true; }

run -cmd ir "${MAC[@]}" "${REQ[@]}" -reqout ir-mac.der,certconf-mac.der
run -cmd cr "${SIG[@]}" "${REQ[@]}" -reqout cr-sig.der,certconf-sig.der
run -cmd p10cr "${SIG[@]}" -csr pki/p10.csr -reqout p10cr-sig.der
run -cmd kur -cert pki/new.crt -key pki/new.key -trusted "$W/srv.crt" -newkey pki/new.key -reqout kur-sig.der
run -cmd rr "${SIG[@]}" -oldcert pki/new.crt -revreason 1 -reqout rr-sig.der
run -cmd genm "${MAC[@]}" -infotype signKeyPairTypes -reqout genm-mac.der
run -cmd ir "${MAC[@]}" "${REQ[@]}" -poll_count 1 -check_after 0 -reqout ir-mac-poll.der,pollreq-mac.der
run -cmd ir -unprotected_requests -recipient "/CN=cmp-srv" "${REQ[@]}" -reqout ir-none.der
run -cmd cr -cert pki/revoked.crt -key pki/revoked.key -trusted "$W/srv.crt" "${REQ[@]}" -reqout cr-sig-revoked.der
run -cmd cr -cert pki/stranger.crt -key pki/stranger.key -trusted "$W/srv.crt" "${REQ[@]}" -reqout cr-sig-stranger.der
run -cmd ir "${MAC[@]}" -newkey pki/weak.key -subject /CN=device1 -reqout ir-mac-rsa1024.der
rm -f pki/*.srl pki/*.key
ls -l ./*.der pki
