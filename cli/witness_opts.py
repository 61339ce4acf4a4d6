"""Options for verifiers that demand witness cosignatures (``--witness KEY … --quorum N``).

Meaning, for every command that takes them (``custody log checkpoint --witnessed``; meant
to be attached to ``custody verify`` and ``custody bundle verify`` as well):

* ``--witness KEY`` (repeatable): a witness the verifier trusts, as its C2SP
  tlog-cosignature verifier key ``name+keyid+base64`` (type 0x04), exactly as
  ``custody witness init`` printed it. Obtain it from the witnessing agency out of band;
  the server's list of who cosigned is never trusted.
* ``--quorum N``: how many DISTINCT trusted witnesses must have validly cosigned the
  checkpoint the verdict rests on. Default: all of the ``--witness`` keys given. A
  checkpoint with fewer valid cosignatures fails verification (exit 1) with one sentence
  naming how many valid of how many required; a cosignature line that claims a trusted
  key but does not verify fails too. Lines of keys not named are ignored.

The log's own signature is always checked as well (with the pinned log key). Use
:func:`witness_policy` to validate the pair once and :func:`check_witnessed` to apply it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from ledger.core.errors import InvalidInput

if TYPE_CHECKING:  # imported where used (they bring libsodium): --help stays light
    from ledger.core.witness import Witnessed

Witnesses = Annotated[list[str] | None, typer.Option(
    "--witness", metavar="KEY",
    help="A witness you trust, as its verifier key name+keyid+base64 (type 0x04, printed by "
    "'custody witness init'); repeat for several. The checkpoint must carry a quorum of "
    "valid cosignatures from these keys.")]
Quorum = Annotated[int | None, typer.Option(
    "--quorum", metavar="N", min=1,
    help="How many distinct --witness keys must have cosigned (default: all given).")]


@dataclass(frozen=True)
class WitnessPolicy:
    """Trusted witness keys and the quorum of them a checkpoint needs."""

    keys: tuple[str, ...]
    quorum: int


def witness_policy(witnesses: list[str] | None, quorum: int | None) -> WitnessPolicy | None:
    """Validate ``--witness``/``--quorum``; None when no witness is demanded.

    Refuses (InvalidInput, exit 2): a quorum without witnesses, a quorum larger than the
    number of witnesses, a key that is not a type 0x04 verifier key, a key given twice."""
    from ledger.core.note import ALG_COSIGNATURE_V1, parse_verifier_key

    keys = list(witnesses or [])
    if not keys:
        if quorum is not None:
            raise InvalidInput("--quorum needs at least one --witness KEY")
        return None
    for key in keys:
        try:
            parse_verifier_key(key, ALG_COSIGNATURE_V1)
        except InvalidInput as exc:
            raise InvalidInput(f"--witness {key[:60]!r}: {exc.message}") from None
    if len(set(keys)) != len(keys):
        raise InvalidInput("the same --witness key is given twice")
    need = len(keys) if quorum is None else quorum
    if not 1 <= need <= len(keys):
        raise InvalidInput(f"--quorum {need} is more than the {len(keys)} --witness "
                           "key(s) given")
    return WitnessPolicy(tuple(keys), need)


def check_witnessed(note: str, log_key: str, policy: WitnessPolicy) -> Witnessed:
    """Verify the log's signature and the policy's quorum of cosignatures on ``note``;
    raise VerificationError (exit 1) otherwise."""
    from ledger.core.witness import verify_witnessed

    return verify_witnessed(note, log_key, list(policy.keys), policy.quorum)
