"""Keys, addresses and signatures: Ed25519 through pynacl.

address = the first 20 bytes of SHA-256(public key). A signature covers `compute_sign_bytes(chain_id, body)`:
the domain tag, one length byte, the ASCII chain id, then the exact transaction body bytes.
"""

import hashlib

import nacl.bindings
import nacl.exceptions
import nacl.signing

from stf.constants import ADDRESS_LEN, TX_DOMAIN_TAG


def compute_address(public_key: bytes) -> bytes:
    return hashlib.sha256(public_key).digest()[:ADDRESS_LEN]


def compute_sign_bytes(chain_id: str, body: bytes) -> bytes:
    chain = chain_id.encode("ascii")
    return TX_DOMAIN_TAG + bytes((len(chain),)) + chain + body


def is_valid_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


class PrivateKey:
    """An Ed25519 signing key made from a 32-byte seed (wallets, tests and benchmarks; never used by the STF)."""

    __slots__ = ("_signing_key", "public_key", "address")

    def __init__(self, seed: bytes) -> None:
        self._signing_key = nacl.signing.SigningKey(seed)
        self.public_key = bytes(self._signing_key.verify_key)
        self.address = compute_address(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._signing_key.sign(message).signature
