"""``custody report``: the court report of one artefact (HTML or PDF), written with the
court bundle it reads and a verification page that re-checks that bundle in a browser.

The report is computed from a verified bundle only (``ledger.court.model``): from this
ledger at the client's trusted checkpoint, or from a bundle file received (``--bundle``,
no ledger needed) checked against a log key given out of band.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import context
from cli.commands.bundle import checkpoint_for, print_faults, read_bundle, write_atomic_files
from cli.witness_opts import Quorum, Witnesses, witness_policy
from ledger.core.errors import InvalidInput, LedgerError, NotFound

if TYPE_CHECKING:
    from ledger.core.bundle import Bundle, VerifyResult

FORMATS = {".html": "html", ".htm": "html", ".pdf": "pdf"}


def outputs(out: Path) -> tuple[str, Path, Path]:
    """The report's format and the two files written beside it: ``NAME.bundle.json``
    and ``NAME.verify.html``."""
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InvalidInput(f"{out}: the report is written as .html or .pdf (the suffix "
                           "chooses)")
    stem = out.with_suffix("")
    bundle_path = stem.with_name(stem.name + ".bundle.json")
    page_path = stem.with_name(stem.name + ".verify.html")
    if len({out.resolve(), bundle_path.resolve(), page_path.resolve()}) != 3:
        raise InvalidInput(f"{out}: choose a report name whose bundle and verification "
                           "page do not replace the report itself")
    return fmt, bundle_path, page_path


def report(
    ctx: typer.Context,
    artefact: Annotated[str | None, typer.Argument(
        help="Artefact id (omit with --bundle).")] = None,
    out: Annotated[Path, typer.Option(
        "--out", help="The report: FILE.html or FILE.pdf. FILE.bundle.json and "
        "FILE.verify.html are written beside it.")] = Path("report.html"),
    lang: Annotated[str, typer.Option("--lang", help="Language: en, de, fr or nl.")] = "en",
    evidence: Annotated[Path | None, typer.Option(
        "--evidence", help="The evidence file: hashed and compared with the proven "
        "registration (the verdict is then authentic or mismatch).")] = None,
    bundle_file: Annotated[Path | None, typer.Option(
        "--bundle", help="Report on this bundle file instead of this ledger (no ledger "
        "needed; give --log-key).")] = None,
    log_key: Annotated[str | None, typer.Option(
        "--log-key", help="With --bundle: the log's verifier key, obtained out of band.")]
    = None,
    witnesses: Witnesses = None,
    quorum: Quorum = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")]
    = False,
    as_: Annotated[str | None, typer.Option("--as", help="Read as this actor (server mode).")]
    = None,
    json_: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Write the court report of an artefact: the verdict in plain words, the artefact, a
    custody timeline (picture and steps), every access, integrity incidents, the checkpoint
    and its witnesses, and an appendix with keys, proofs and the command to check it.
    Exit 0 when the verdict is authentic (or verified without --evidence), 1 otherwise
    (the report is still written and says why)."""
    from ledger.core.bundle import verify_bundle
    from ledger.court import i18n

    i18n.check_language(lang)
    fmt, bundle_path, page_path = outputs(out)
    if not force:
        for path in (out, bundle_path, page_path):
            if path.exists():
                raise InvalidInput(f"{path} exists; use --force to overwrite it")
    if (artefact is None) == (bundle_file is None):
        raise InvalidInput("name an artefact, or give --bundle FILE (not both)")
    if bundle_file is None and log_key is not None:
        raise InvalidInput("--log-key goes with --bundle; a ledger's reports use the log "
                           "key pinned in its home")
    sha = None
    if evidence is not None:
        from cli.commands.custody import hashed

        sha = hashed(ctx, evidence).sha256
    if bundle_file is not None:
        policy = witness_policy(witnesses, quorum)
        keys, need = (policy.keys, policy.quorum) if policy else ((), 0)
        bundle = read_bundle(bundle_file)
        key = log_key or _pinned_key(ctx)
        result = verify_bundle(bundle, log_key=key, evidence_sha256=sha, witnesses=keys,
                               quorum=need)
    else:
        assert artefact is not None  # noqa: S101 - checked above
        c = context.get(ctx).reading_as(as_)
        cp, keys, need = checkpoint_for(c, witnesses, quorum)
        key = c.loaded().pinned_log_key()
        bundle, cache_faults = c.reader().bundle(artefact_id=artefact, size=cp.size)
        result = verify_bundle(bundle, log_key=key, evidence_sha256=sha, witnesses=keys,
                               quorum=need, expect=cp).with_faults(cache_faults)
        if result.verdict == "not-registered":
            raise NotFound(f"unknown artefact {artefact!r} at checkpoint size {cp.size}")
    files = documents(bundle, result, fmt=fmt, lang=lang, log_key=key, out=out,
                      bundle_path=bundle_path, page_path=page_path,
                      evidence=evidence, witnesses=tuple(keys), quorum=need)
    write_atomic_files(files)
    summary = {"verdict": result.verdict, "report": str(out), "format": fmt, "lang": lang,
               "bundle": str(bundle_path),
               "bundle_sha256": hashlib.sha256(files[bundle_path]).hexdigest(),
               "verify_page": str(page_path), "artefact_id": result.artefact_id,
               "events": len(result.timeline),
               "tree_size": result.checkpoint.size if result.checkpoint else None,
               "faults": [f.to_json() for f in result.faults]}
    if context.want_json(ctx, json_):
        context.emit_json(summary)
    else:
        colour = "green" if result.ok else "red"
        context.console.print(f"Verdict: [bold {colour}]{result.verdict}[/]")
        print_faults(result)
        context.console.print(f"Wrote {out} ({fmt}, {lang}), {bundle_path} (SHA-256 "
                              f"{summary['bundle_sha256']}) and {page_path}")
    if not result.ok:
        raise typer.Exit(1)


def _pinned_key(ctx: typer.Context) -> str:
    try:
        return context.get(ctx).loaded().pinned_log_key()
    except LedgerError:  # no home, or a home without a pinned key
        raise InvalidInput("give --log-key: the log's verifier key, obtained out of band "
                           "(no ledger home with a pinned key here)") from None


def documents(bundle: Bundle, result: VerifyResult, *, fmt: str, lang: str, log_key: str,
              out: Path, bundle_path: Path, page_path: Path, evidence: Path | None,
              witnesses: tuple[str, ...], quorum: int) -> dict[Path, bytes]:
    from ledger.court.output import court_documents

    docs = court_documents(bundle, result, fmt=fmt, lang=lang, log_key=log_key,
                           bundle_name=bundle_path.name, page_name=page_path.name,
                           evidence_name=evidence.name if evidence else None,
                           witnesses=witnesses, quorum=quorum,
                           generated_at=int(time.time() * 1000))
    return {out: docs.report, bundle_path: docs.bundle, page_path: docs.page}
