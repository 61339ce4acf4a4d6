"""The only module that calls PyNaCl's raw Ed25519 primitives.

Everything else goes through :mod:`ledger.signing` (events) or :mod:`ledger.core.note`
(C2SP signed notes). Keeping the primitive behind one door means one place to audit
for misuse (RFC 8032, strict verification) and one place to swap the library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import nacl.exceptions
import nacl.signing

from ledger.core.errors import InvalidInput, InvalidSignature

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


#: A check made elsewhere: ``(public key, message, signature) -> True | False``, or
#: ``None`` when it holds no result for exactly that triple. See :func:`known_results`.
KnownResult = Callable[[bytes, bytes, bytes], bool | None]
_KNOWN: ContextVar[KnownResult | None] = ContextVar("ledger_sodium_known", default=None)


@contextmanager
def known_results(lookup: KnownResult) -> Iterator[None]:
    """Within this block (this thread / context only), :func:`verify` first asks
    ``lookup`` for the result of the exact triple it is given.

    For callers that ran THIS module's check (:func:`valid`) on the same triples ahead
    of time, e.g. in worker processes (:mod:`ledger.parallel_verify`), so the code that
    calls :func:`verify` in order (the custody rules) keeps its order of checks and its
    refusals while the signatures are checked in parallel. A lookup must answer only
    for a triple equal byte for byte to one it checked, and ``None`` otherwise (then the
    signature is checked here as usual).
    """
    token = _KNOWN.set(lookup)
    try:
        yield
    finally:
        _KNOWN.reset(token)


def _check(public_key: bytes, message: bytes, signature: bytes) -> None:
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidSignature("the public key is not 32 bytes")
    if len(signature) != SIGNATURE_SIZE:
        raise InvalidSignature("the signature is not 64 bytes")
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError,
            nacl.exceptions.TypeError) as exc:
        raise InvalidSignature("the Ed25519 signature does not verify") from exc


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Verify an Ed25519 signature; raise :class:`InvalidSignature` on any failure.

    libsodium's ``crypto_sign_verify_detached`` rejects non-canonical S, small-order
    public keys and small-order R, so signature malleability is refused here.
    """
    lookup = _KNOWN.get()
    if lookup is not None and len(public_key) == PUBLIC_KEY_SIZE \
            and len(signature) == SIGNATURE_SIZE:
        known = lookup(public_key, message, signature)
        if known is True:
            return
        if known is False:
            raise InvalidSignature("the Ed25519 signature does not verify")
    _check(public_key, message, signature)


def valid(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether :func:`verify` accepts the triple (never consults a known result)."""
    try:
        _check(public_key, message, signature)
    except InvalidSignature:
        return False
    return True


def failing(triples: Iterable[tuple[bytes, bytes, bytes]]) -> list[int]:
    """The positions of the ``(public key, message, signature)`` triples that do not
    verify, in increasing order."""
    return [i for i, (pk, msg, sig) in enumerate(triples) if not valid(pk, msg, sig)]
