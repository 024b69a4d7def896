#!/bin/sh
# Make the certificates ws_port's TLS tests need, with the openssl CLI.
#
#   test/peers/make_certs.sh DIR
#
# Writes into DIR (created if missing), each as NAME.pem + NAME.key:
#   ca          a test CA (self-signed, CA:true)
#   server      signed by ca; SAN DNS:localhost, IP:127.0.0.1; serverAuth
#   wrongname   signed by ca; SAN DNS:wrong.example only (hostname mismatch
#               for both "localhost" and 127.0.0.1)
#   nosan       signed by ca; CN=localhost and no subjectAltName (the CN is
#               never checked: a hostname mismatch for "localhost")
#   untrusted   self-signed, SAN DNS:localhost, IP:127.0.0.1 (not from ca)
#   client      signed by ca; clientAuth (for mutual TLS)
# All keys are EC P-256; certificates are valid from now for 2 days.
set -eu

dir=${1:?usage: make_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

# sign NAME SUBJECT EXTFILE-CONTENT: CSR for NAME.key, signed by ca.
sign() {
  key "$1"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days 2 -sha256 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

key ca
openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=ws_port test CA" \
  -addext "basicConstraints=critical,CA:true" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem

sign server "/CN=localhost" "basicConstraints=CA:false
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"

sign wrongname "/CN=wrong.example" "basicConstraints=CA:false
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:wrong.example"

sign nosan "/CN=localhost" "basicConstraints=CA:false
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth"

sign client "/CN=ws_port test client" "basicConstraints=CA:false
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"

key untrusted
openssl req -x509 -new -key untrusted.key -sha256 -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -addext "extendedKeyUsage=serverAuth" -out untrusted.pem

rm -f ca.srl
