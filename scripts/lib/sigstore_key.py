#!/usr/bin/env python3
"""Makes a sigstore (cosign-format) ECDSA P-256 key pair for the e2e tests.

    python3 scripts/lib/sigstore_key.py PREFIX PASSPHRASE

writes PREFIX.key (PEM `ENCRYPTED SIGSTORE PRIVATE KEY`: PKCS#8 encrypted as
go-securesystemslib's `encrypted` package does, scrypt N=32768 r=8 p=1 and NaCl
secretbox), PREFIX.pub (PEM `PUBLIC KEY`) and PREFIX.pem (the private key
unencrypted, PKCS#8, for scripts/lib/sigstore_attach.py). skopeo 1.9 has no
`generate-sigstore-key` (1.13 added it) and cosign is not installed here, so
this stands in for `cosign generate-key-pair`; the result is what
`skopeo copy --sign-by-sigstore-private-key` reads.

NaCl's secretbox (XSalsa20-Poly1305) is written out below because PyNaCl is
not installed: Salsa20/HSalsa20 from the reference description, Poly1305 from
the `cryptography` package.
"""

import base64
import hashlib
import json
import os
import struct
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.poly1305 import Poly1305

MASK = 0xFFFFFFFF
SIGMA = b"expand 32-byte k"


def _rotl(v, c):
    return ((v << c) & MASK) | (v >> (32 - c))


def _rounds(x):
    def q(a, b, c, d):
        x[b] ^= _rotl((x[a] + x[d]) & MASK, 7)
        x[c] ^= _rotl((x[b] + x[a]) & MASK, 9)
        x[d] ^= _rotl((x[c] + x[b]) & MASK, 13)
        x[a] ^= _rotl((x[d] + x[c]) & MASK, 18)

    for _ in range(10):
        q(0, 4, 8, 12)
        q(5, 9, 13, 1)
        q(10, 14, 2, 6)
        q(15, 3, 7, 11)
        q(0, 1, 2, 3)
        q(5, 6, 7, 4)
        q(10, 11, 8, 9)
        q(15, 12, 13, 14)


def _state(key, sixteen):
    s = struct.unpack("<4I", SIGMA)
    k = struct.unpack("<8I", key)
    n = struct.unpack("<4I", sixteen)
    return [s[0], k[0], k[1], k[2], k[3], s[1], n[0], n[1], n[2], n[3], s[2],
            k[4], k[5], k[6], k[7], s[3]]


def hsalsa20(key, nonce16):
    x = _state(key, nonce16)
    _rounds(x)
    return struct.pack("<8I", x[0], x[5], x[10], x[15], x[6], x[7], x[8], x[9])


def salsa20_stream(key, nonce8, length):
    out = bytearray()
    counter = 0
    while len(out) < length:
        start = _state(key, nonce8 + struct.pack("<Q", counter))
        x = list(start)
        _rounds(x)
        out += struct.pack("<16I", *[(a + b) & MASK for a, b in zip(x, start)])
        counter += 1
    return bytes(out[:length])


def secretbox_seal(message, nonce, key):
    sub = hsalsa20(key, nonce[:16])
    stream = salsa20_stream(sub, nonce[16:], 32 + len(message))
    ciphertext = bytes(a ^ b for a, b in zip(message, stream[32:]))
    tag = Poly1305.generate_tag(stream[:32], ciphertext)
    return tag + ciphertext


def encrypt(plaintext, passphrase):
    salt = os.urandom(32)
    nonce = os.urandom(24)
    n, r, p = 32768, 8, 1
    key = hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)
    return json.dumps({
        "kdf": {"name": "scrypt", "params": {"N": n, "r": r, "p": p},
                "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(secretbox_seal(plaintext, nonce, key)).decode(),
    }).encode()


def pem(kind, data):
    b64 = base64.b64encode(data).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    prefix, passphrase = sys.argv[1], sys.argv[2].encode()
    private = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    with open(prefix + ".key", "w") as f:
        f.write(pem("ENCRYPTED SIGSTORE PRIVATE KEY", encrypt(pkcs8, passphrase)))
    with open(prefix + ".pem", "wb") as f:
        f.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    with open(prefix + ".pub", "wb") as f:
        f.write(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return 0


if __name__ == "__main__":
    sys.exit(main())
