"""Checkpoint trust on a client: when may a kept checkpoint be replaced by a newer one?

A client keeps the newest checkpoint it has accepted (``HOME/checkpoints/latest``) and
accepts a new one only if the log it describes EXTENDS the kept one (threat T4: a log
truncated, rewritten or shown differently to different clients). One pure function,
:func:`update_trusted`, decides; it does no I/O (the consistency proof comes from a
callable the caller passes in) and uses no clock.

Rules, in order (each refusal raises :class:`~ledger.core.errors.CheckpointRefused` with a
stable ``kind`` and one sentence, and the kept checkpoint is never replaced):

1. The new note must verify with the PINNED log key: an Ed25519 signature by that key
   and an origin equal to the key's name (:func:`ledger.core.checkpoint.verify_checkpoint`;
   signature lines of other keys, such as witness cosignatures, are ignored) — else
   ``unverified``.
2. The kept note, when there is one, must verify the same way: the file may have been
   edited — else ``kept-invalid`` (never silently replaced).
3. No kept note: the new one is accepted (first use; trust rests on the pinned key).
4. new size < kept size — ``rollback`` (the log was truncated, or this is a stale view).
   Only for an append receipt (``older_ok=True``) is an older checkpoint legitimate
   (another process of this client advanced the kept one meanwhile, or the receipt of an
   idempotent retry carries the original checkpoint): it is then accepted as evidence
   but not kept, if ``consistency(new.size, kept.size)`` proves the kept tree extends it
   — else ``fork``.
5. new size == kept size: the checkpoint texts (origin, size, root and extension lines)
   must be identical — else ``fork`` (the log key signed two different statements about
   the same tree: a split view). Identical texts keep the kept note unchanged.
6. new size > kept size: the consistency proof ``consistency(kept.size, new.size)``
   must verify (RFC 9162 §2.1.4.2, :mod:`ledger.core.merkle_verify`) from the kept root to
   the new root — else ``fork``. An error raised by the proof source itself (the server
   is unreachable, cannot serve the proof) is passed through unchanged: nothing is
   accepted without a verified proof.

The note kept is always the whole note as received, with every signature line (so
witness cosignatures are kept as evidence), and extension lines (e.g.
``custody-map/v1 <base64>``) are part of the checkpoint text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ledger.core import merkle_verify
from ledger.core.checkpoint import Checkpoint, verify_checkpoint
from ledger.core.errors import CheckpointRefused, NotFound, VerificationError
from ledger.core.note import NoteVerifier

#: ``consistency(old_size, new_size)`` -> the RFC 9162 consistency proof hashes.
Consistency = Callable[[int, int], Sequence[bytes]]


@dataclass(frozen=True)
class TrustDecision:
    """The outcome of :func:`update_trusted`: the checkpoint and note to keep.

    ``advanced`` is True when the kept checkpoint changes (first use, or a larger size
    proven consistent); ``previous_size`` is the size kept before (None on first use);
    ``received`` is the new checkpoint, verified (equal to ``checkpoint`` when advanced).
    """

    checkpoint: Checkpoint
    note: str
    advanced: bool
    previous_size: int | None
    received: Checkpoint


def update_trusted(kept: str | None, new: str, log_key: str, consistency: Consistency,
                   *, older_ok: bool = False) -> TrustDecision:
    """Decide whether checkpoint note ``new`` replaces the ``kept`` note (see the module
    docstring for the rules; ``older_ok`` only for an append receipt's checkpoint).
    Raises :class:`CheckpointRefused` on a refusal, and
    :class:`~ledger.core.errors.InvalidInput` if ``log_key`` is not a verifier key."""
    name = NoteVerifier.from_key(log_key).name
    cp = verify_or_refuse(
        new, log_key, "unverified",
        f"the ledger's checkpoint does not verify with the pinned log key of {name}",
        ", so it is not trusted")
    if kept is None:
        return TrustDecision(cp, new, True, None, cp)
    old = verify_or_refuse(
        kept, log_key, "kept-invalid",
        f"the checkpoint this client kept does not verify with the pinned log key of {name}",
        ": the file was edited or the key changed, so it is not replaced")
    if cp.size < old.size:
        if older_ok:
            try:
                _prove(consistency, cp, old, f"the ledger's checkpoint (size {cp.size}) is "
                       f"not a prefix of the one this client kept (size {old.size})")
            except NotFound:  # the ledger cannot even prove up to the kept size
                raise CheckpointRefused(
                    f"the ledger no longer has the {old.size} entries of the checkpoint this "
                    f"client kept (its checkpoint has size {cp.size}): the log was truncated",
                    "rollback") from None
            return TrustDecision(old, kept, False, old.size, cp)
        raise CheckpointRefused(
            f"the ledger's checkpoint (size {cp.size}) is older than the one this client "
            f"kept (size {old.size}): the log was truncated or you are shown a stale view",
            "rollback")
    if cp.size == old.size:
        if cp != old:
            what = "root" if cp.root != old.root else "extension lines"
            raise CheckpointRefused(
                f"the ledger's checkpoint at size {cp.size} has a different {what} from the "
                "one this client kept: the log key signed two different trees of the same "
                "size (a forked log or split view)", "fork")
        return TrustDecision(old, kept, False, old.size, cp)
    _prove(consistency, old, cp, f"the ledger's checkpoint (size {cp.size}) does not extend "
           f"the one this client kept (size {old.size})")
    return TrustDecision(cp, new, True, old.size, cp)


def verify_or_refuse(note: str, log_key: str, kind: str, refusal: str,
                     consequence: str) -> Checkpoint:
    """The checkpoint of ``note``, verified with the pinned ``log_key``
    (:func:`ledger.core.checkpoint.verify_checkpoint`); otherwise :class:`CheckpointRefused` of
    ``kind`` (``unverified`` or ``kept-invalid``) with the message
    ``"{refusal} ({why it failed}){consequence}"``."""
    try:
        return verify_checkpoint(note, log_key)
    except VerificationError as exc:
        raise CheckpointRefused(f"{refusal} ({exc.message}){consequence}", kind) from None


def _prove(consistency: Consistency, older: Checkpoint, newer: Checkpoint, what: str) -> None:
    """``newer`` extends ``older`` by a verified RFC 9162 consistency proof, else fork."""
    proof = consistency(older.size, newer.size)
    try:
        merkle_verify.verify_consistency(older.size, newer.size, older.root, newer.root,
                                         list(proof))
    except VerificationError as exc:
        raise CheckpointRefused(f"{what}: the consistency proof fails ({exc.message}), so "
                                "the log was rewritten or forked", "fork") from None
