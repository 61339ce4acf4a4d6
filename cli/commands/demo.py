"""``custody demo``: the whole cross-border custody story on a fresh embedded ledger.

Every step runs a real ``custody`` command (in-process) and checks its exit code, so
the demo is also an end-to-end test of the CLI.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import context
from cli.options import Json
from ledger.core.errors import InvalidInput

DEMO_SIZE = 64 * 1024 * 1024


class _Story:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.failures: list[str] = []

    def say(self, text: str) -> None:
        context.console.print(f"\n[bold cyan]▶ {text}[/]")

    def run(self, args: list[str], expect: int = 0, capture: bool = False) -> Any:
        from cli.main import run

        shown = " ".join(shlex.quote(a) for a in args)
        context.console.print(f"[dim]$ custody {shown}[/]", highlight=False)
        argv = ["--home", str(self.home), *args]
        if capture:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                code = run(["--json", *argv])
        else:
            code = run(argv)
        if code != expect:
            self.failures.append(f"'custody {shown}' exited {code}, expected {expect}")
            context.err_console.print(f"[red]unexpected exit code {code} (expected {expect})[/]")
        elif expect and not capture:  # a captured step reports after its own line
            context.console.print(f"[dim](exit {code}, as expected)[/]")
        if capture:
            return json.loads(buf.getvalue().splitlines()[-1]) if buf.getvalue() else {}
        return None

    def verdict(self, args: list[str], expect: int = 0) -> str:
        """Run a verification and print its verdict in one line (the custody table is
        printed once, at the end, not after every verification)."""
        out = self.run(args, expect=expect, capture=True)
        context.console.print(
            f"Verdict: [bold]{out.get('verdict', '?')}[/]  sha256 {out.get('sha256', '?')}",
            highlight=False)
        if expect:
            context.console.print(f"[dim](exit {expect}, as expected)[/]")
        return str(out.get("verdict", "?"))


def demo(
    ctx: typer.Context,
    home: Annotated[Path | None, typer.Option(
        "--home", help="Where to create the demo ledger (default: a new temporary "
        "directory). Must not already hold a ledger.")] = None,
    size_mib: Annotated[int, typer.Option(min=1, max=4096, help="Size of the generated disk "
                                          "image in MiB.")] = 64,
    network: Annotated[Path | None, typer.Option(
        help="Run the story on this Fabric network ('custody network up --orgs DE,NL,FR'; "
        "a network whose channel has no ledger yet) instead of an embedded ledger.")] = None,
    json_: Json = False,
) -> None:
    """Run the whole custody story: two agencies in two countries, a joint case, an MLAT
    request, a disk image registered, a transfer refused without legal basis and dispatched
    with it, a tampered copy rejected, the true copy accepted, access logged (and denied),
    a court verifying, and an audit. Keys are stored unencrypted: demo only. With
    --json the story goes to stderr and stdout gets one JSON summary."""
    if context.want_json(ctx, json_):
        with contextlib.redirect_stdout(sys.stderr):
            summary = _story(home, size_mib, network)
        context.emit_json(summary)
        return
    _story(home, size_mib, network)


def _story(home: Path | None, size_mib: int, network: Path | None = None) -> dict[str, Any]:
    root = home or Path(tempfile.mkdtemp(prefix="custody-demo-"))
    if (root / "config.json").exists():
        raise InvalidInput(f"{root} already holds a ledger; pick an empty --home")
    work = root / "evidence"
    work.mkdir(parents=True, exist_ok=True)
    s = _Story(root)
    until = (dt.date.today() + dt.timedelta(days=90)).isoformat()

    s.say("The Bundeskriminalamt (Germany) creates the ledger")
    where = ["--network", str(network.resolve())] if network is not None \
        else ["--origin", "demo.custody.example/ledger"]
    s.run(["init", *where, "--org-name", "BKA", "--jurisdiction", "DE", "--admin-name",
           "Demo Admin", "--no-passphrase"])
    if s.failures:
        raise InvalidInput("the demo could not create its ledger: " + s.failures[0])
    s.say("It registers the Netherlands Forensic Institute and a French agency, and enrols "
          "people with roles")
    s.run(["org", "add", "--name", "NFI", "--jurisdiction", "NL", "--as", "bka-admin"])
    s.run(["org", "add", "--name", "OFAC", "--jurisdiction", "FR", "--as", "bka-admin"])
    for org, name, role, aid in [
        ("bka", "Eva Examiner", "examiner", "de-examiner"),
        ("bka", "Carl Custodian", "custodian", "de-custodian"),
        ("bka", "Petra Prosecutor", "prosecutor", "de-prosecutor"),
        ("nfi", "Nina Custodian", "custodian,examiner", "nl-custodian"),
        ("ofac", "Felix Analyst", "examiner", "fr-analyst"),
    ]:
        s.run(["actor", "enrol", "--org", org, "--name", name, "--role", role, "--id", aid,
               "--no-passphrase", "--as", "bka-admin"])

    s.say("A prosecutor opens a joint case and adds the Dutch institute (joint team)")
    s.run(["case", "open", "CASE-2026-0042", "--title", "Ransomware intrusion",
           "--as", "de-prosecutor"])
    s.run(["case", "add-member", "CASE-2026-0042", "--org", "nfi", "--as", "de-prosecutor"])

    s.say(f"The examiner registers a {size_mib} MiB disk image (one read, SHA-256 + SHA-512)")
    image = work / "disk01.E01"
    with image.open("wb") as fh:
        for _ in range(size_mib):
            fh.write(os.urandom(1024 * 1024))
    # Runs like a user's command (not captured), so it shows its progress bar on a
    # terminal and its one-line result; the ids are fixed so no output needs parsing.
    art, basis = "DE-01-disk", "MLA-2026-0042"
    s.run(["register", str(image), "--case", "CASE-2026-0042", "--type", "disk-image",
           "--exhibit", "DE-01", "--description", "Seized laptop SSD", "--id", art,
           "--as", "de-examiner"])

    s.say("Custody to the Netherlands without a legal basis is refused (nothing written)")
    s.run(["transfer", art, "--to", "nfi", "--purpose", "malware analysis",
           "--as", "de-custodian"], expect=3)

    s.say("The MLAT request from the Netherlands is recorded, then the dispatch goes through")
    s.run(["legal-basis", "add", "--instrument", "mlat", "--reference", "MLA-2026-0042",
           "--issuing-state", "NL", "--executing-state", "DE", "--valid-until", until,
           "--case", "CASE-2026-0042", "--restriction", "speciality", "--id", basis,
           "--as", "de-prosecutor"])
    tr1, tr2 = "TR-0001", "TR-0002"
    s.run(["transfer", art, "--to", "nfi", "--purpose", "malware analysis",
           "--legal-basis", basis, "--transport", "courier", "--seal", "S-1001", "--id", tr1,
           "--as", "de-custodian"])

    s.say("NFI's custodian finds the incoming transfer in the organisation's inbox")
    s.run(["transfers", "list", "--pending", "--as", "nl-custodian"])

    s.say("A tampered copy arrives: NFI re-hashes it BEFORE accepting, and rejects it")
    tampered = work / "disk01-tampered.E01"
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    del data
    s.run(["receive", tr1, "--file", str(tampered), "--as", "nl-custodian"], expect=1)

    s.say("The true copy is sent again, SEALED: encrypted to NFI's key (age format) in the "
          "same read that hashes it; the package's digest is in the signed dispatch")
    package = work / f"{tr2}.age"
    s.run(["transfer", art, "--to", "nfi", "--purpose", "malware analysis (resend)",
           "--legal-basis", basis, "--transport", "courier", "--seal", "S-1002", "--id", tr2,
           "--seal-file", str(image), "--out", str(package), "--as", "de-custodian"])
    s.say("NFI checks the package against the dispatch, opens it, re-hashes the evidence in "
          "the same pass, and only then accepts: NFI becomes custodian")
    received = work / "received"
    received.mkdir(exist_ok=True)
    s.run(["receive", tr2, "--package", str(package), "--seal", "S-1002", "--out",
           str(received), "--as", "nl-custodian"])

    s.say("Every access is logged; an agency outside the case is denied, and that is logged")
    s.run(["access", art, "--action", "analysis-start", "--purpose", "malware triage",
           "--as", "nl-custodian"])
    s.run(["access", art, "--action", "view", "--purpose", "curiosity", "--as", "fr-analyst"],
          expect=3)

    s.say("A court verifies the true file and the tampered one")
    verdicts = {"true_copy": s.verdict(["verify", str(image)]),
                "tampered_copy": s.verdict(["verify", str(tampered), "--artefact", art],
                                           expect=1)}

    s.say("The court receives a report, the bundle it reads, and a page that re-checks "
          "the bundle in a browser, offline")
    court = root / "court"
    court.mkdir(exist_ok=True)
    s.run(["report", art, "--evidence", str(image), "--out", str(court / "report.html"),
           "--force"])

    s.say("The artefact and its custody timeline, once, as they stand at the end")
    s.run(["artefact", "show", art])
    s.run(["history", art])

    s.say("An auditor re-verifies the whole ledger")
    report = s.run(["audit"], capture=True)
    context.console.print(f"audit {'passed' if report.get('ok') else 'FAILED'}: "
                          f"{report.get('entries_checked')} entries, tree size "
                          f"{report.get('tree_size')}", highlight=False)

    if s.failures:
        for failure in s.failures:
            context.err_console.print(f"[red]demo step failed:[/] {failure}")
        raise typer.Exit(1)
    context.console.print(f"\n[bold green]Demo complete.[/] The ledger lives in {root}")
    context.console.print("Explore it:")
    for cmd in (f"custody --home {root} status", f"custody --home {root} history {art}",
                f"custody --home {root} log checkpoint",
                f"custody --home {root} log entries --json",
                f"custody --home {root} verify {image}",
                f"custody --home {root} audit --json",
                f"open {court / 'report.html'}  (and {court / 'report.verify.html'})"):
        context.console.print(f"  {cmd}", highlight=False)
    return {"home": str(root), "artefact_id": art, "evidence": str(image),
            "tampered": str(tampered), "verdicts": verdicts, "audit_ok": bool(report.get("ok")),
            "court_report": str(court / "report.html"),
            "tree_size": report.get("tree_size")}
