"""The only module that calls PyNaCl's raw Ed25519 primitives.

Everything else goes through :mod:`ledger.signing` (events) or :mod:`ledger.note`
(C2SP signed notes). Keeping the primitive behind one door means one place to audit
for misuse (RFC 8032, strict verification) and one place to swap the library.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.signing

from ledger.errors import InvalidInput, InvalidSignature

PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64


def public_key_from_seed(seed: bytes) -> bytes:
    """Derive the 32-byte Ed25519 public key of a 32-byte seed (RFC 8032 §5.1.5)."""
    if len(seed) != SEED_SIZE:
        raise InvalidInput("an Ed25519 private key seed must be exactly 32 bytes")
    return bytes(nacl.signing.SigningKey(seed).verify_key)


def sign(seed: bytes, message: bytes) -> bytes:
    """Return the 64-byte detached Ed25519 signature of ``message`` (RFC 8032 §5.1.6)."""
    if len(seed) != SEED_SIZE:
        raise InvalidInput("an Ed25519 private key seed must be exactly 32 bytes")
    return bytes(nacl.signing.SigningKey(seed).sign(message).signature)


class Signer:
    """A loaded Ed25519 key: avoids re-deriving the expanded key on every signature."""

    __slots__ = ("_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise InvalidInput("an Ed25519 private key seed must be exactly 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)

    def __repr__(self) -> str:  # never print key material
        return f"Signer(public_key={self.public_key.hex()[:16]}…)"


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Verify an Ed25519 signature; raise :class:`InvalidSignature` on any failure.

    libsodium's ``crypto_sign_verify_detached`` rejects non-canonical S, small-order
    public keys and small-order R, so signature malleability is refused here.
    """
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidSignature("the public key is not 32 bytes")
    if len(signature) != SIGNATURE_SIZE:
        raise InvalidSignature("the signature is not 64 bytes")
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError,
            nacl.exceptions.TypeError) as exc:
        raise InvalidSignature("the Ed25519 signature does not verify") from exc
