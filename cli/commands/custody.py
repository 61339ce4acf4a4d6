"""The custody verbs: register, transfer, receive, access, history, verify, status.

Sealed exchange (docs/sealed-exchange.md): ``transfer --seal-file FILE --out PACKAGE``
seals the evidence to the receiving organisation's current encryption key and signs the
package's digest into the dispatch; ``receive --package PACKAGE`` opens it with this
home's keys of the receiving organisation and only then signs an acceptance, or signs a
rejection naming why (``ledger.seal.REASONS``, ``seal-mismatch``)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli import context
from cli.options import As, Json, check_choice
from cli.witness_opts import Quorum, Witnesses
from ledger.core.errors import (
    Backpressure,
    InvalidInput,
    LedgerError,
    NotFound,
    RuleViolation,
    UpstreamError,
    VerificationError,
)
from ledger.core.state import artefact_key, org_key, org_keys_key, transfer_key
from ledger.core.vocab import ACCESS_ACTIONS, ARTEFACT_TYPES, STRONG_DIGESTS

if TYPE_CHECKING:
    # Imported where used: this module is loaded for every verb (and its --help), and the
    # events, views and service modules bring the payload models and the store with them.
    from ledger.evidence import Digests
    from ledger.service import ActorKey, Custody
    from ledger.store.base import AppendResult

FileArg = Annotated[Path, typer.Argument(help="The evidence file (read once, never stored).")]


def hashed(ctx: typer.Context, path: Path, blake3: bool = False) -> Digests:
    """Hash a file in one streaming read, with a progress bar on a terminal."""
    from ledger.evidence import evidence_size, hash_file

    c = context.get(ctx)
    size = evidence_size(path)  # a block device's size comes from the device
    with context.progress(c, f"Hashing {path.name}", total=size) as update:
        return hash_file(path, blake3=blake3, progress=update)


def register(
    ctx: typer.Context,
    file: FileArg,
    case: Annotated[str, typer.Option(help="Case reference.")],
    kind: Annotated[str, typer.Option("--type", help="One of: " + ", ".join(ARTEFACT_TYPES))]
    = "file",
    exhibit: Annotated[str, typer.Option(help="Exhibit number.")] = "",
    description: Annotated[str, typer.Option(help="Description (no personal data).")] = "",
    parent: Annotated[list[str] | None, typer.Option(
        "--parent", "--derived-from", metavar="ID", help="The artefact this one is derived "
        "from (a copy, an extraction; repeat).")] = None,
    duplicate_of: Annotated[str | None, typer.Option(
        "--duplicate-of", metavar="ID", help="The artefact already registered with the "
        "same bytes that this one knowingly duplicates (e.g. a second exhibit of the same "
        "image).")] = None,
    blake3: Annotated[bool, typer.Option("--blake3", help="Also compute BLAKE3.")] = False,
    artefact_id: Annotated[str | None, typer.Option("--id", help="Artefact id (default: "
                                                    "generated).")] = None,
    allow_empty: Annotated[bool, typer.Option(
        "--allow-empty", help="Register a 0-byte file (refused by default: every empty "
        "file would then verify as this artefact).")] = False,
    as_: As = None,
    json_: Json = False,
) -> None:
    """Register an artefact: SHA-256 and SHA-512 from one streaming read, signed by you.
    An empty file is refused unless --allow-empty. Bytes already registered in the case
    are refused unless they name that artefact with --duplicate-of or --derived-from."""
    check_choice(kind, ARTEFACT_TYPES, "type")
    c = context.get(ctx)
    actor = c.actor(as_)
    custody = c.custody()
    digests = hashed(ctx, file, blake3)
    if digests.size == 0 and not allow_empty:
        raise InvalidInput(f"{file} is empty (0 bytes): any empty file would verify as this "
                           "artefact; pass --allow-empty if that is really the evidence")
    receipt = custody.register(actor, case=case, digests=digests, kind=kind, exhibit=exhibit,
                               description=description, parents=parent or [],
                               artefact_id=artefact_id, duplicate_of=duplicate_of)
    art = receipt.result["artefact"]
    context.done(ctx, json_, receipt, {"artefact_id": art, **digests.as_dict(),
                                       "size": digests.size, "case": case,
                                       "parents": parent or [], "duplicate_of": duplicate_of},
                 f"Registered [bold]{art}[/] ({digests.size} bytes)\n  sha256 {digests.sha256}"
                 f"\n  sha512 {digests.sha512}"
                 + (f"\n  duplicate of {duplicate_of}" if duplicate_of else ""))


def transfer(
    ctx: typer.Context,
    artefact: Annotated[str, typer.Argument(help="Artefact id.")],
    to: Annotated[str, typer.Option(help="Receiving organisation.")],
    purpose: Annotated[str, typer.Option(help="Why custody moves.")],
    legal_basis: Annotated[str | None, typer.Option(help="Legal basis id (required across "
                                                    "borders).")] = None,
    to_actor: Annotated[str | None, typer.Option(help="A named receiving actor.")] = None,
    transport: Annotated[str, typer.Option(help="Transport method, e.g. courier.")] = "",
    transport_ref: Annotated[str, typer.Option(help="Tracking reference.")] = "",
    seal: Annotated[list[str] | None, typer.Option(help="Seal number (repeat).")] = None,
    transfer_id: Annotated[str | None, typer.Option("--id", help="Transfer id (default: "
                                                    "generated).")] = None,
    seal_file: Annotated[Path | None, typer.Option(
        "--seal-file", metavar="FILE", help="Seal this evidence file into an encrypted "
        "package (age) for the receiving organisation's current key; the file must be the "
        "registered bytes (hashed in the same read). Needs --out.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="PACKAGE", help="Where to write the sealed package (a new file; "
        "it appears only once complete).")] = None,
    seal_to_self: Annotated[bool, typer.Option(
        "--seal-to-self", help="Also seal the package to your own organisation's current "
        "key, so it can open the package it sent.")] = False,
    as_: As = None,
    json_: Json = False,
) -> None:
    """Dispatch custody to another organisation. Refused (exit 3) across jurisdictions
    without a legal basis covering this artefact, both states and today. With
    --seal-file FILE --out PACKAGE the evidence travels as a package only the receiving
    organisation can open, and the dispatch signs its SHA-256: a refused dispatch leaves
    no package behind."""
    if seal_file is None and (out is not None or seal_to_self):
        raise InvalidInput("--out and --seal-to-self go with --seal-file FILE (the evidence "
                           "to seal)")
    if seal_file is not None and out is None:
        raise InvalidInput("--seal-file needs --out PACKAGE: where to write the sealed "
                           "package")
    c = context.get(ctx)
    actor = c.actor(as_)
    custody = c.custody()
    common: dict[str, Any] = {"artefact": artefact, "to_org": to, "purpose": purpose,
                              "legal_basis": legal_basis, "to_actor": to_actor,
                              "transport": transport, "transport_ref": transport_ref,
                              "seals": seal or []}
    if seal_file is None or out is None:
        receipt = custody.dispatch(actor, transfer_id=transfer_id, **common)
        tr = receipt.result["transfer"]
        context.done(ctx, json_, receipt, {"transfer": tr, "artefact": artefact, "to": to},
                     f"Dispatched {artefact} to {to}: transfer [bold]{tr}[/]")
        return
    receipt, package = _sealed_dispatch(ctx, custody, actor, seal_file, out, seal_to_self,
                                        transfer_id, common)
    tr = receipt.result["transfer"]
    keys = package["recipient"] + "".join(f", {k}" for k in package["also_to"])
    context.done(ctx, json_, receipt, {"transfer": tr, "artefact": artefact, "to": to,
                                       "package": package, "package_file": str(out)},
                 f"Dispatched {artefact} to {to}: transfer [bold]{tr}[/]\n"
                 f"  sealed package {out} ({package['size']} bytes, sha256 "
                 f"{package['sha256']}) to key(s) {keys}")


def _sealed_dispatch(ctx: typer.Context, custody: Custody, actor: ActorKey, src: Path,
                     out: Path, seal_to_self: bool, transfer_id: str | None,
                     common: dict[str, Any]) -> tuple[AppendResult, dict[str, Any]]:
    """Seal ``src`` to the receiving organisation's current key (and the sender's with
    ``seal_to_self``), check the plaintext digests from that same read against the
    registration, then sign the dispatch with the package in it. The package is deleted
    whenever the dispatch is not on the ledger."""
    from ledger.evidence import evidence_size
    from ledger.seal import FORMAT, seal

    art = custody.record(artefact_key(common["artefact"]), "artefact")
    to_org = common["to_org"]
    custody.record(org_key(to_org), "organisation")
    key_id, recipient = _current_key(custody, to_org, f"{to_org} (the receiving organisation)")
    recipients, also_to = [recipient], []
    if seal_to_self:
        own_id, own = _current_key(custody, art["custodian"],
                                   f"{art['custodian']} (your organisation, for --seal-to-self)")
        recipients.append(own)
        also_to.append(own_id)
    c = context.get(ctx)
    with context.progress(c, f"Hashing and sealing {src.name}",
                          total=evidence_size(src)) as update:
        sealed = seal(src, out, recipients, progress=update)
    tr_id = transfer_id or custody.new_id("tr")
    with _undo_unless_recorded(custody, transfer_key(tr_id),
                               lambda rec: (rec.get("package") or {}).get("sha256")
                               == sealed.package_sha256,
                               lambda: out.unlink(missing_ok=True)):
        differ = _differences(_registered(art), sealed.plaintext)
        if differ:
            raise VerificationError(
                f"{src} is not the registered bytes of {art['id']} ({'; '.join(differ)}): "
                "the package was deleted and nothing was signed")
        package = {"sha256": sealed.package_sha256, "size": sealed.package_size,
                   "format": FORMAT, "recipient": key_id, "also_to": also_to,
                   "digests": {"sha256": sealed.plaintext.sha256,
                               "sha512": sealed.plaintext.sha512}}
        receipt = custody.dispatch(actor, transfer_id=tr_id, package=package, **common)
    return receipt, package


@contextlib.contextmanager
def _undo_unless_recorded(custody: Custody, key: str, ours: Callable[[dict[str, Any]], bool],
                          undo: Callable[[], None]) -> Iterator[None]:
    """Run ``undo`` if the block fails and its event is not on the ledger: a refusal
    (the rules, permissions, input) certainly is not; after any other failure (a lost
    connection, an interrupt) the ledger is asked, and if it cannot tell, nothing is
    undone."""
    try:
        yield
    except BaseException as exc:
        definitive = isinstance(exc, LedgerError) and not isinstance(
            exc, (UpstreamError, Backpressure))
        if definitive:
            undo()
        else:
            try:
                rec = custody.store.state(key)
            except Exception:  # cannot tell: keep what was made
                rec = {"unknown": True}
            if rec is None or (not rec.get("unknown") and not ours(rec)):
                undo()
        raise


def _current_key(custody: Custody, org: str, who: str) -> tuple[str, str]:
    """The key id and age recipient of ``org``'s current encryption key, from state."""
    from ledger.core import events as ev

    rec = custody.store.state(org_keys_key(org)) or {}
    key_id = rec.get("current")
    if not key_id:
        raise RuleViolation("package-recipient", f"{who} has no current encryption key, so "
                            f"nothing can be sealed to it; an administrator of {org} enrols "
                            f"one with 'custody org key rotate {org}'")
    recipient = str(rec["keys"][key_id]["recipient"])
    if ev.org_key_id(recipient) != key_id:
        raise VerificationError(f"the state record {org_keys_key(org)} names key {key_id} with a "
                                "recipient of another id: the record is damaged")
    return str(key_id), recipient


def _registered(art: dict[str, Any]) -> Digests:
    """The registered digests of an artefact record (an algorithm it did not record is
    empty, and not compared)."""
    from ledger.evidence import Digests

    d = art["digests"]
    return Digests(sha256=d["sha256"], sha512=d.get("sha512", ""), blake3=d.get("blake3"),
                   size=int(art["size"]))


def _differences(registered: Digests, got: Digests) -> list[str]:
    out = [] if got.size == registered.size else [
        f"{got.size} bytes, registered {registered.size}"]
    have = got.as_dict()
    for name, want in registered.as_dict().items():
        if want and name in have and have[name] != want:
            out.append(f"{name} {have[name]}, registered {want}")
    return out


def receive(
    ctx: typer.Context,
    transfer_id: Annotated[str, typer.Argument(metavar="TRANSFER", help="Transfer id.")],
    file: Annotated[Path | None, typer.Option(help="The bytes received; re-hashed BEFORE "
                                              "accepting.")] = None,
    package: Annotated[Path | None, typer.Option(
        "--package", metavar="PACKAGE", help="The sealed package received (a sealed "
        "transfer): opened with this home's keys of your organisation and checked BEFORE "
        "accepting.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="DIR", help="Where to write the opened evidence (default: the "
        "package's folder; the name is the package's without .age).")] = None,
    seal: Annotated[list[str] | None, typer.Option(help="Seal number received (repeat).")]
    = None,
    seal_discrepancy: Annotated[str, typer.Option(
        "--seal-discrepancy", metavar="REASON", help="Accept although the seals received "
        "differ from those dispatched, recording why (an integrity incident).")] = "",
    reason: Annotated[str, typer.Option(help="Reason, for a rejection (a package or seal "
                                        "rejection keeps its own reason and adds this).")]
    = "",
    as_: As = None,
    json_: Json = False,
) -> None:
    """Receive custody: re-hash the received file (--file), or open and check the sealed
    package (--package); on a match a signed acceptance makes your organisation the
    custodian (exit 0); otherwise a signed rejection naming why is recorded as an
    integrity incident, custody does not move, no opened evidence is left, and the
    command exits 1. Seals that differ from those dispatched are a rejection too, unless
    --seal-discrepancy REASON accepts them (an incident all the same)."""
    if (file is None) == (package is None):
        raise InvalidInput("give the bytes received with --file FILE, or the package of a "
                           "sealed transfer with --package PACKAGE (one of them)")
    if out is not None and package is None:
        raise InvalidInput("--out DIR goes with --package PACKAGE")
    c = context.get(ctx)
    actor = c.actor(as_)
    custody = c.custody()
    tr = custody.record(transfer_key(transfer_id), "transfer")
    art = custody.record(artefact_key(tr["artefact"]), "artefact")
    sent = tr.get("package")
    if package is not None:
        _receive_package(ctx, custody, actor, tr, art, package, out, seal or [],
                         seal_discrepancy, reason, json_)
        return
    assert file is not None  # noqa: S101 - checked above
    if sent is not None:
        raise InvalidInput(f"transfer {transfer_id} was dispatched as a sealed package "
                           f"(sha256 {sent['sha256']}): receive it with --package PACKAGE")
    digests = hashed(ctx, file, blake3="blake3" in art["digests"])
    seals = seal or []
    if not _differences(_registered(art), digests):
        problem = _seal_problem(tr, seal, seal_discrepancy)
        if problem is not None:
            _rejected(ctx, json_, custody, actor, tr, art, digests, "seal-mismatch",
                      _with_note(problem, reason), seals, None)
    receipt = custody.receive(actor, transfer=transfer_id, digests=digests, reason=reason,
                              seals=seals, seal_discrepancy=seal_discrepancy)
    outcome = receipt.result["outcome"]
    fields = {"transfer": transfer_id, "outcome": outcome, "sha256": digests.sha256,
              "mismatched": receipt.result.get("mismatched", []),
              "custodian": receipt.result.get("custodian"),
              "seal_discrepancy": seal_discrepancy or None}
    if outcome == "accepted":
        context.done(ctx, json_, receipt, fields,
                     f"[green]Accepted[/]: digests match; {fields['custodian']} is custodian"
                     + _discrepancy_note(seal_discrepancy))
        return
    context.done(ctx, json_, receipt, {**fields, "reason": "digest-mismatch"},
                 "[red]Rejected[/]: the received bytes do not match the registered digests; "
                 "integrity incident recorded, custody unchanged")
    raise typer.Exit(1)


def _with_note(reason: str, note: str) -> str:
    """A rejection's reason (it starts with its code) and the receiver's own words."""
    return f"{reason} ({note})" if note else reason


def _discrepancy_note(seal_discrepancy: str) -> str:
    return ("\n  seal discrepancy recorded (an integrity incident): " + seal_discrepancy
            if seal_discrepancy else "")


def _seal_problem(tr: dict[str, Any], given: list[str] | None,
                  seal_discrepancy: str) -> str | None:
    """Why the seals received cannot be accepted as they are, or None. Seals given that
    differ from those dispatched are a rejection (returned); no --seal at all for a
    sealed dispatch is a usage error (nothing is signed)."""
    sent = list(tr.get("seals") or [])
    if not sent or seal_discrepancy or set(given or []) == set(sent):
        return None
    if not given:
        raise InvalidInput(f"transfer {tr['id']} was dispatched under seal(s) "
                           f"{', '.join(sent)}: give the seals you received with --seal "
                           "(different seals are recorded as a rejection), or accept with "
                           "--seal-discrepancy REASON")
    return (f"seal-mismatch: the seals received ({', '.join(given)}) differ from those "
            f"dispatched ({', '.join(sent)})")


def _receive_package(ctx: typer.Context, custody: Custody, actor: ActorKey,
                     tr: dict[str, Any], art: dict[str, Any], package: Path,
                     out: Path | None, seals: list[str], seal_discrepancy: str, reason: str,
                     json_: bool) -> None:
    from ledger.evidence import evidence_size
    from ledger.seal import PackageRejected, open_package

    sent = tr.get("package")
    if sent is None:
        raise InvalidInput(f"transfer {tr['id']} was dispatched without a sealed package: "
                           "receive the bytes with --file FILE")
    if tr.get("status", "open") != "open":
        raise RuleViolation("no-open-dispatch", f"transfer {tr['id']} is not open (it was "
                            f"{tr.get('status')}); nothing was opened or signed")
    dest = _destination(package, out, art["id"])
    identities = _org_identities(context.get(ctx), tr["to_org"], sent["recipient"])
    c = context.get(ctx)
    try:
        with context.progress(c, f"Hashing and opening {package.name}",
                              total=evidence_size(package)) as update:
            opened = open_package(package, identities, dest,
                                  expected_package_sha256=sent["sha256"],
                                  expected=_registered(art), progress=update)
    except PackageRejected as exc:
        _rejected(ctx, json_, custody, actor, tr, art, exc.plaintext or _nothing(),
                  exc.reason, _with_note(exc.message, reason), seals, exc.package_sha256)
    try:
        problem = _seal_problem(tr, seals, seal_discrepancy)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    if problem is not None:
        dest.unlink(missing_ok=True)
        _rejected(ctx, json_, custody, actor, tr, art, opened.digests, "seal-mismatch",
                  _with_note(problem, reason), seals, opened.package_sha256)
    with _undo_unless_recorded(custody, transfer_key(tr["id"]),
                               lambda rec: rec.get("status") == "accepted",
                               lambda: dest.unlink(missing_ok=True)):
        receipt = custody.receive(actor, transfer=tr["id"], digests=opened.digests,
                                  seals=seals, package_sha256=opened.package_sha256,
                                  seal_discrepancy=seal_discrepancy)
        if receipt.result["outcome"] != "accepted":  # pragma: no cover - checked above
            raise VerificationError(f"the receipt of {tr['id']} was recorded as "
                                    f"{receipt.result['outcome']}")
    fields = {"transfer": tr["id"], "outcome": "accepted", "sha256": opened.digests.sha256,
              "package_sha256": opened.package_sha256, "file": str(dest), "mismatched": [],
              "custodian": receipt.result.get("custodian"),
              "seal_discrepancy": seal_discrepancy or None}
    context.done(ctx, json_, receipt, fields,
                 f"[green]Accepted[/]: the package is the one dispatched and holds the "
                 f"registered bytes; {fields['custodian']} is custodian\n  evidence in {dest}"
                 + _discrepancy_note(seal_discrepancy))


def _nothing() -> Digests:
    """The digests of no bytes at all (what a package that never opened yielded)."""
    from ledger.evidence import Digests

    return Digests(sha256=hashlib.sha256(b"").hexdigest(),
                   sha512=hashlib.sha512(b"").hexdigest(), blake3=None, size=0)


def _destination(package: Path, out: Path | None, artefact: str) -> Path:
    folder = package.parent if out is None else out
    if not folder.is_dir():
        raise InvalidInput(f"--out {folder} is not a directory")
    name = package.name
    name = name[:-len(".age")] if name.endswith(".age") and len(name) > len(".age") \
        else artefact
    return folder / name


def _org_identities(c: context.Ctx, org: str, key_id: str) -> list[str]:
    """The identity of ``org``'s key ``key_id`` (current or retired) that the package
    names, from this home. A home that does not hold it cannot tell anything about the
    package: NotFound, and nothing is signed (trying the org's other keys could only
    end in a ``wrong-recipient`` rejection that would be this home's fault)."""
    home = c.loaded()
    local = home.local_org_keys(org)
    if key_id not in local:
        raise NotFound(f"the package is sealed to {org}'s encryption key {key_id}, which this "
                       f"home does not hold (keys of {org} here: "
                       f"{', '.join(sorted(local)) or 'none'}); receive it where that key is "
                       "kept. Nothing was signed")
    return [home.org_identity(org, key_id)]


def _rejected(ctx: typer.Context, json_: bool, custody: Custody, actor: ActorKey,
              tr: dict[str, Any], art: dict[str, Any], digests: Digests, code: str,
              reason: str, seals: list[str], package_sha256: str | None) -> None:
    """Sign a rejection of the transfer (an integrity incident), report it, exit 1."""
    from ledger.core import events as ev

    payload: dict[str, Any] = {
        "transfer": tr["id"], "artefact": tr["artefact"], "outcome": "rejected",
        "recomputed": {k: v for k, v in digests.as_dict().items() if k in STRONG_DIGESTS},
        "reason": reason[:2000], "seals": seals}
    if package_sha256 is not None:
        payload["package_sha256"] = package_sha256
    receipt = custody.submit(ev.RECEIPT, actor, payload, prev=art["head"])
    fields = {"transfer": tr["id"], "outcome": "rejected", "reason": code, "detail": reason,
              "sha256": digests.sha256, "package_sha256": package_sha256,
              "mismatched": receipt.result.get("mismatched", []),
              "custodian": receipt.result.get("custodian")}
    context.done(ctx, json_, receipt, fields,
                 f"[red]Rejected[/] ({code}): {reason}; integrity incident recorded, custody "
                 "unchanged")
    raise typer.Exit(1)


def access(
    ctx: typer.Context,
    artefact: Annotated[str, typer.Argument(help="Artefact id.")],
    action: Annotated[str, typer.Option(help="One of: " + ", ".join(ACCESS_ACTIONS))],
    purpose: Annotated[str, typer.Option(help="Why.")],
    authorisation: Annotated[str, typer.Option(help="Authorisation reference.")] = "",
    as_: As = None,
    json_: Json = False,
) -> None:
    """Record an access to an artefact. A denied attempt is recorded too, and exits 3."""
    check_choice(action, ACCESS_ACTIONS, "action")
    c = context.get(ctx)
    actor = c.actor(as_)
    receipt = c.custody().access(actor, artefact=artefact, action=action,
                                 purpose=purpose, authorisation=authorisation)
    context.done(ctx, json_, receipt, {"artefact": artefact, "action": action,
                                       "outcome": "success"},
                 f"Recorded {action} of {artefact}")


def history(
    ctx: typer.Context,
    artefact: Annotated[str, typer.Argument(help="Artefact id.")],
    witnesses: Witnesses = None,
    quorum: Quorum = None,
    as_: As = None,
    json_: Json = False,
) -> None:
    """Show the custody timeline: who, which agency and country, legal basis, digests
    checked, log index and ledger time. Every line is a signed entry proven against the
    checkpoint this client trusts, and the list is proven complete; exit 1 otherwise."""
    from cli.commands.bundle import print_faults, proven

    c = context.get(ctx).reading_as(as_)
    cp, result = proven(c, witnesses, quorum, artefact_id=artefact)
    if result.verdict == "not-registered":
        raise NotFound(f"unknown artefact {artefact!r}")
    items = [t.to_json() for t in result.timeline]
    if context.want_json(ctx, json_):
        context.emit_json({"artefact_id": artefact, "custody": items,
                           "complete": result.complete, "tree_size": cp.size,
                           "faults": [f.to_json() for f in result.faults]})
    else:
        table(items)
    if not result.ok:
        print_faults(result)
        raise typer.Exit(1)


def table(items: list[dict[str, Any]]) -> None:
    from rich.table import Table

    out = Table("#", "ledger time (UTC)", "event", "by", "agency", "country", "legal basis")
    for it in items:
        out.add_row(str(it["index"]), it["ledger_time"], it["summary"],
                    f"{it['signer_name']} ({it['signer']})", it["org"], it["jurisdiction"],
                    it.get("legal_basis") or "")
    context.console.print(out)


def verify(
    ctx: typer.Context,
    file: FileArg,
    artefact: Annotated[str | None, typer.Option(help="The artefact the file should be.")]
    = None,
    witnesses: Witnesses = None,
    quorum: Quorum = None,
    as_: As = None,
    json_: Json = False,
) -> None:
    """For courts: hash the file and give a verdict from proofs only: the artefact's signed
    entries, their inclusion proofs and the proof that the list is complete, checked
    against the checkpoint this client trusts (and, with --witness, cosigned by a quorum).
    Bytes registered more than once (in several cases, or as a duplicate or a derived
    copy) list every artefact registered with them, each verified the same way.
    authentic (exit 0); not-registered, mismatch or fault (exit 1)."""
    from cli.commands.bundle import proven, report
    from cli.witness_opts import witness_policy
    from ledger import views

    c = context.get(ctx).reading_as(as_)
    digests = hashed(ctx, file)
    cp, result = proven(c, witnesses, quorum, artefact_id=artefact, sha256=digests.sha256)
    if artefact is not None and result.verdict == "not-registered" and not result.faults:
        raise NotFound(f"unknown artefact {artefact!r}: the checkpoint of size {cp.size} "
                       "proves it was never registered")
    # Every other registration of these bytes (proven by the digest's complete history),
    # verified against the very same checkpoint.
    others = []
    if artefact is None and result.also_registered_as:
        policy = witness_policy(witnesses, quorum)
        for other in result.also_registered_as:
            others.append(views.verify(
                c.reader(), log_key=c.loaded().pinned_log_key(), artefact_id=other,
                sha256=digests.sha256, size=cp.size, expect=cp,
                witnesses=policy.keys if policy else (), quorum=policy.quorum if policy else 0))
    for each in (result, *others):
        _record_capability(c, as_, each, digests.sha256, cp.size)
    results = (result, *others)
    if context.want_json(ctx, json_):
        context.emit_json({**result.to_json(), "artefacts": [
            _summary(r) for r in results if r.artefact_id and r.verdict != "not-registered"]})
        if not all(r.ok for r in results):
            raise typer.Exit(1)
        return
    try:
        report(ctx, result, json_, "every entry's signature and inclusion proof verified")
    finally:
        if others:
            _print_others(others)
    if not all(r.ok for r in others):
        raise typer.Exit(1)


def _record_capability(c: context.Ctx, as_: str | None, result: Any, sha256: str,
                       size: int) -> None:
    if c.loaded().config.get("server") and result.artefact_id \
            and result.verdict in ("authentic", "mismatch") \
            and not _visible(c, result.artefact_id):
        # Through a server, holding the bytes is a capability: a court or an auditor
        # outside the case may verify the artefact and see its chain, and that use of
        # the capability is on the log, signed by the verifier.
        receipt = c.custody().record_verification(
            c.actor(as_), artefact=result.artefact_id, sha256=sha256,
            tree_size=size, verdict=result.verdict)
        c.remember_receipt(receipt)
        context.err_console.print(f"The verification is recorded at log index "
                                  f"{receipt.index} ({result.artefact_id}).", highlight=False)


def _relations(result: Any) -> dict[str, Any]:
    """The signed relations of an artefact's registration (parents, duplicate_of)."""
    from ledger.core import events as ev

    for item in result.timeline:
        if item.kind == ev.ARTEFACT_REGISTER:
            return {"parents": list(item.details.get("parents", [])),
                    "duplicate_of": item.details.get("duplicate_of")}
    return {"parents": [], "duplicate_of": None}


def _summary(result: Any) -> dict[str, Any]:
    return {"artefact_id": result.artefact_id, "verdict": result.verdict,
            "case": result.case, "exhibit": result.exhibit, "custodian": result.custodian,
            "open_transfer": result.open_transfer, "incidents": result.incidents,
            "events": len(result.timeline), "complete": result.complete,
            **_relations(result), "faults": [f.to_json() for f in result.faults]}


def _print_others(others: list[Any]) -> None:
    from cli.commands.bundle import print_faults

    out = context.console
    out.print(f"The same bytes are also registered as {len(others)} other artefact(s), each "
              "proven at the same checkpoint:", highlight=False)
    for r in others:
        rel = _relations(r)
        extra = "".join([f"; duplicate of {rel['duplicate_of']}" if rel["duplicate_of"]
                         else "", f"; derived from {', '.join(rel['parents'])}"
                         if rel["parents"] else ""])
        exhibit = f", exhibit {r.exhibit}" if r.exhibit else ""
        colour = "green" if r.ok else "red"
        out.print(f"  [bold]{r.artefact_id}[/] [{colour}]{r.verdict}[/]: case {r.case}"
                  f"{exhibit}, custodian {r.custodian}; {len(r.timeline)} events, "
                  f"{'proven complete' if r.complete else 'NOT proven complete'}{extra}",
                  highlight=False)
        print_faults(r)


def _visible(c: context.Ctx, artefact_id: str) -> bool:
    """Whether the verifier may read the artefact's record (a party to its case)."""
    try:
        return c.reader().state(artefact_key(artefact_id)) is not None
    except LedgerError:
        return True  # the server refuses its own record: the verdict names that fault


def status(ctx: typer.Context, as_: As = None, json_: Json = False) -> None:
    """Ledger size, last checkpoint and counts."""
    from ledger import views

    out = context.get(ctx).reading_as(as_).quick_read(views.status)
    if context.want_json(ctx, json_):
        context.emit_json(out)
        return
    for key, value in out.items():
        if key != "checkpoint":
            context.console.print(f"{key.replace('_', ' ')}: {value}")
    context.console.print("checkpoint:\n" + (out["checkpoint"] or "(none)"))
