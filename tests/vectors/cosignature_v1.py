#!/usr/bin/env python3
"""Known answers for src/witness/cosignature.rs, computed independently of
the Rust code: C2SP tlog-cosignature (cosignature/v1, Ed25519) built from the
spec's description with Python's `cryptography` package.

Run: python3 tests/vectors/cosignature_v1.py
"""
import base64
import hashlib
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

NAME = "witness.example.com/w1"
SEED = bytes([7] * 32)
TIME = 1679315147
# The checkpoint body of the spec's example.
BODY = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

key = Ed25519PrivateKey.from_private_bytes(SEED)
public = key.public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw
)
key_id = hashlib.sha256(NAME.encode() + b"\n" + b"\x04" + public).digest()[:4]
message = b"cosignature/v1\ntime %d\n" % TIME + BODY
signature = key.sign(message)
print("key id:", key_id.hex())
print("vkey:  ", f"{NAME}+{key_id.hex()}+" + base64.b64encode(b"\x04" + public).decode())
print(
    "line:  ",
    f"— {NAME} "
    + base64.b64encode(key_id + struct.pack(">Q", TIME) + signature).decode(),
)
