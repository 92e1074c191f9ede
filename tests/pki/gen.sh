#!/usr/bin/env bash
# Regenerates the checked-in test PKI in this folder (see README.md):
#
#   tests/pki/gen.sh
#
# Needs the openssl CLI (1.1.1 or 3.x). Every key is ECDSA P-256 except
# `weak-rsa` (RSA 1024, to test the key-strength check). Valid certificates run
# from 2024 to 2044; `expired` ended in 2021. These keys are public: test use only.
set -euo pipefail
umask 077

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

start=20240101000000Z
end=20441231000000Z
urn=urn:renkei:participant
rm -f ./*.pem ./*.key

cat >"$work/ca.cnf" <<CNF
[ca]
default_ca = renkei

[renkei]
dir = $work
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
crlnumber = \$dir/crlnumber
default_md = sha256
default_crl_days = 7300
policy = anything
unique_subject = no
copy_extensions = none
crl_extensions = crl_ext

[anything]
commonName = supplied

[req]
distinguished_name = dn
prompt = no

[dn]
CN = unused

[crl_ext]
authorityKeyIdentifier = keyid

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
CNF
mkdir -p "$work/new"
: >"$work/index.txt"
echo 01 >"$work/serial"
echo 1000 >"$work/crlnumber"

# Runs a chatty openssl command, showing its output only when it fails.
quiet() { "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }; }

# Adds a client extension section: client SECTION [SAN].
client() {
    cat >>"$work/ca.cnf" <<CNF

[$1]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
    if [ $# -ge 2 ]; then echo "subjectAltName = $2" >>"$work/ca.cnf"; fi
}

# Makes NAME.key and a certificate NAME.pem for "CN" with extension SECTION,
# signed by SIGNER (`self` for a self-signed CA):
#   issue NAME "CN" SECTION SIGNER [STARTDATE ENDDATE]
issue() {
    local name="$1" cn="$2" section="$3" signer="$4"
    local from="${5:-$start}" to="${6:-$end}"
    if [ "$name" = weak-rsa ]; then
        quiet openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$name.key"
    else
        quiet openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key"
    fi
    quiet openssl req -new -config "$work/ca.cnf" -key "$name.key" -subj "/CN=$cn" -out "$work/$name.csr"
    local sign=(-cert "$signer.pem" -keyfile "$signer.key")
    if [ "$signer" = self ]; then sign=(-selfsign -keyfile "$name.key"); fi
    quiet openssl ca -batch -notext -rand_serial -config "$work/ca.cnf" "${sign[@]}" \
        -extensions "$section" -startdate "$from" -enddate "$to" \
        -in "$work/$name.csr" -out "$name.pem"
}

issue ca "Renkei test participant CA" ca_ext self
issue server localhost server_ext ca
cat ca.pem >>server.pem
issue weak-rsa localhost server_ext ca

for pair in source:city-a phr:asmile clinic:mysos analyst:hachioji municipality:city-a admin:ops; do
    name="${pair/:/-}"
    client "c_$name" "URI:$urn:$pair"
    issue "$name" "$pair" "c_$name" ca
done
client c_expired "URI:$urn:phr:expired"
issue expired phr:expired c_expired ca 20200101000000Z 20210101000000Z
client c_revoked "URI:$urn:phr:revoked"
issue revoked phr:revoked c_revoked ca
client c_no-san
issue no-san phr:no-san c_no-san ca
client c_two-san "URI:$urn:phr:two-san-a, URI:$urn:clinic:two-san-b"
issue two-san phr:two-san-a c_two-san ca
client c_unknown-kind "URI:$urn:vendor:unknown-kind"
issue unknown-kind vendor:unknown-kind c_unknown-kind ca

# A phr client from another CA: the hub must refuse it. The other CA's key is dropped.
issue other-ca "Some other CA" ca_ext self
client c_wrong-ca "URI:$urn:phr:wrong-ca"
issue wrong-ca phr:wrong-ca c_wrong-ca other-ca
rm other-ca.key

# The CRL lists `revoked` only.
quiet openssl ca -config "$work/ca.cnf" -cert ca.pem -keyfile ca.key -revoke revoked.pem -crl_reason keyCompromise
quiet openssl ca -config "$work/ca.cnf" -cert ca.pem -keyfile ca.key -gencrl -out crl.pem

chmod 600 ./*.key
chmod 644 ./*.pem
echo "test PKI written to $here"
