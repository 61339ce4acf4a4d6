"""``custody bundle export|verify``: the court's offline bundle (docs/bundle.md), and the
one place where the CLI turns a :class:`~ledger.core.bundle.VerifyResult` into output."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import context
from cli.witness_opts import Quorum, Witnesses, witness_policy
from ledger.core.errors import InvalidInput, NotFound, VerificationError

if TYPE_CHECKING:
    from ledger.core.bundle import Bundle, VerifyResult
    from ledger.core.checkpoint import Checkpoint

app = typer.Typer(help="Offline court bundles: export one artefact's proofs to a file, "
                  "verify a bundle with no network and no ledger.", no_args_is_help=True)

#: Largest bundle file ``bundle verify`` reads (a bundle is JSON text, not evidence).
MAX_BUNDLE_BYTES = 512 * 1024 * 1024


def checkpoint_for(c: context.Ctx, witnesses: list[str] | None,
                   quorum: int | None) -> tuple[Checkpoint, tuple[str, ...], int]:
    """The checkpoint a verdict rests on, trusted by this client: the latest one (through
    the client's checkpoint trust), or with ``--witness`` the newest checkpoint cosigned
    by a quorum, proven to be a prefix of (or to extend) the kept one."""
    c.loaded().pinned_log_key()  # refuses a home without one
    policy = witness_policy(witnesses, quorum)
    if policy is None:
        return _parse(c.trusted_checkpoint()), (), 0
    found = c.reader().witnessed_checkpoint(policy.quorum)
    if found is None:
        raise VerificationError(f"no checkpoint of this ledger is cosigned by {policy.quorum} "
                                "witness(es) yet")
    _size, note = found
    # Signed by the pinned key, and consistent with the kept checkpoint (it may be older:
    # witnesses lag the log; then the kept one must extend it and stays kept).
    cp = c.remember(note, older_ok=True).received
    return cp, policy.keys, policy.quorum


def proven(c: context.Ctx, witnesses: list[str] | None, quorum: int | None, *,
           artefact_id: str | None = None,
           sha256: str | None = None) -> tuple[Checkpoint, VerifyResult]:
    """The trusted checkpoint (:func:`checkpoint_for`) and the verification of the
    artefact's (or the digest's) bundle at exactly that checkpoint."""
    from ledger import views

    cp, keys, need = checkpoint_for(c, witnesses, quorum)
    result = views.verify(c.reader(), log_key=c.loaded().pinned_log_key(),
                          artefact_id=artefact_id, sha256=sha256, size=cp.size, expect=cp,
                          witnesses=keys, quorum=need)
    return cp, result


def print_faults(result: VerifyResult) -> None:
    for fault in result.faults:
        where = f" [{fault.key}]" if fault.key else ""
        context.err_console.print(f"[red]fault[/] {fault.kind}{where}: {fault.detail}")


def _parse(note: str) -> Checkpoint:
    from ledger.core.checkpoint import Checkpoint
    from ledger.core.note import split_note

    return Checkpoint.parse(split_note(note)[0])


def report(ctx: typer.Context, result: VerifyResult, json_: bool, what: str) -> None:
    """Print a verification result; exit 1 unless it is authentic (or, with no evidence
    given, verified)."""
    if context.want_json(ctx, json_):
        context.emit_json(result.to_json())
    else:
        out = context.console
        colour = "green" if result.ok else "red"
        line = f"Verdict: [bold {colour}]{result.verdict}[/]"
        if result.sha256:
            line += f"  sha256 {result.sha256}"
        out.print(line)
        print_faults(result)
        cp = result.checkpoint
        if result.artefact_id and result.timeline:
            out.print(f"Artefact {result.artefact_id} of case {result.case}, custodian "
                      f"{result.custodian}; {len(result.timeline)} events, "
                      f"{'proven complete' if result.complete else 'NOT proven complete'} "
                      f"at checkpoint size {cp.size if cp else '?'} ({what})")
            if result.witnesses:
                out.print("Cosigned by witnesses: " + ", ".join(result.witnesses))
            from cli.commands.custody import table

            table([t.to_json() for t in result.timeline])
    if not result.ok:
        raise typer.Exit(1)


def export(
    ctx: typer.Context,
    artefact: Annotated[str, typer.Argument(help="Artefact id.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the bundle (JSON).")],
    witnesses: Witnesses = None,
    quorum: Quorum = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")]
    = False,
    as_: Annotated[str | None, typer.Option("--as", help="Read as this actor (server mode).")]
    = None,
    json_: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Write one self-contained file for a court: the artefact's complete event chain
    (signed entries), an inclusion proof for each, the state-map proofs of completeness,
    signer keys and cited legal bases, and the checkpoint with its witness cosignatures.
    The bundle is verified before it is written."""
    from ledger.core.bundle import verify_bundle

    c = context.get(ctx).reading_as(as_)
    if out.exists() and not force:
        raise InvalidInput(f"{out} exists; use --force to overwrite it")
    cp, keys, need = checkpoint_for(c, witnesses, quorum)
    bundle, cache_faults = c.reader().bundle(artefact_id=artefact, size=cp.size)
    result = verify_bundle(bundle, log_key=c.loaded().pinned_log_key(), witnesses=keys,
                           quorum=need, expect=cp).with_faults(cache_faults)
    if result.verdict == "not-registered":
        raise NotFound(f"unknown artefact {artefact!r} at checkpoint size {cp.size}")
    if not result.ok:
        report(ctx, result, json_, "export refused: the ledger's proofs do not verify")
    data = bundle.to_bytes()
    write_atomic_files({out: data})
    summary = {"artefact_id": artefact, "out": str(out), "bytes": len(data),
               "entries": len(bundle.entries), "tree_size": cp.size,
               "witnesses": list(result.witnesses)}
    if context.want_json(ctx, json_):
        context.emit_json(summary)
    else:
        context.console.print(f"Wrote {out} ({len(data)} bytes): {len(bundle.entries)} "
                              f"signed entries proven at checkpoint size {cp.size}")


def write_atomic_files(files: dict[Path, bytes]) -> None:
    """Write every file or none: each to a temporary file beside it (fsynced), then
    renamed into place only when all were written."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            parent = path.parent if str(path.parent) else Path(".")
            try:
                fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
            except OSError as exc:
                raise InvalidInput(f"cannot write to {parent}: {exc.strerror}") from None
            temps.append((tmp, path))
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
        for tmp, path in temps:
            os.replace(tmp, path)
    finally:
        for tmp, _path in temps:
            Path(tmp).unlink(missing_ok=True)


def read_bundle(path: Path) -> Bundle:
    from ledger.core.bundle import Bundle

    try:
        if not path.is_file():
            raise InvalidInput(f"{path} is not a regular file")
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise InvalidInput(f"{path} is larger than {MAX_BUNDLE_BYTES} bytes")
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError(f"{path} is not a bundle: not JSON ({exc})") from None
    except RecursionError:
        raise VerificationError(f"{path} is not a bundle: JSON nested too deeply") from None
    return Bundle.from_json(obj)


def verify(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The bundle file.")],
    log_key: Annotated[str, typer.Option(
        "--log-key", help="The log's verifier key name+keyid+base64, obtained out of band "
        "(never from the bundle).")],
    evidence: Annotated[Path | None, typer.Option(
        "--evidence", help="The evidence file: hashed and compared with the proven "
        "registration.")] = None,
    witnesses: Witnesses = None,
    quorum: Quorum = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Verify a bundle offline: no network, no ledger. Exit 0 when authentic (or, without
    --evidence, when every proof verifies), 1 otherwise."""
    from ledger.core.bundle import verify_bundle

    policy = witness_policy(witnesses, quorum)
    bundle = read_bundle(file)
    sha = None
    if evidence is not None:
        from cli.commands.custody import hashed

        sha = hashed(ctx, evidence).sha256
    result = verify_bundle(bundle, log_key=log_key, evidence_sha256=sha,
                           witnesses=policy.keys if policy else (),
                           quorum=policy.quorum if policy else 0)
    report(ctx, result, json_, "offline bundle")


app.command("export")(export)
app.command("verify")(verify)
