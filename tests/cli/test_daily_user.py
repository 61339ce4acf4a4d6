"""Issue 9, "What a daily user is missing": full-width output in pipes and files, the
read commands (artefact show/list, case show/list, transfers list --pending), clean help
texts, explicit admin roles at init, and a demo that narrates every step once."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from cli import context
from cli.main import app
from tests.cli.conftest import CASE, ORIGIN, Cli, World, assert_error

# ---- output in a pipe or a file is never cut -------------------------------------------


def test_redirected_output_keeps_full_values(world: World) -> None:
    """``custody history X > report.txt`` used to give "2026-11-29…" and "(de-examin…"."""
    res = world.cli("history", world.art, expect=0)
    assert "…" not in res.out
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", res.out)
    assert "Eva Examiner (de-examiner)" in res.out
    assert max(len(line) for line in res.out.splitlines()) > 80


def test_console_is_unbounded_only_when_not_a_terminal() -> None:
    buf = io.StringIO()
    console = type(context.console)(file=buf, soft_wrap=True)
    assert console.width == context.UNBOUNDED_WIDTH
    tty = type(context.console)(file=buf, soft_wrap=True, force_terminal=True, width=100)
    assert tty.width == 100


# ---- artefact / case / transfers --------------------------------------------------------


def test_artefact_show_text_and_json(world: World) -> None:
    res = world.cli("artefact", "show", world.art, expect=0)
    for text in ("DE-01", "disk-image", "bka", CASE, "sha256", "sha512", "incidents"):
        assert text in res.out
    js = world.cli("artefact", "show", world.art, "--json", expect=0).json
    assert js["id"] == world.art
    assert js["exhibit"] == "DE-01"
    assert js["type"] == "disk-image"
    assert js["custodian"] == "bka"
    assert js["open_transfer"] is None
    assert js["incidents"] == 0
    assert set(js["digests"]) >= {"sha256", "sha512"}
    assert js["description"] == ""


def test_artefact_show_description_open_transfer_and_incidents(world: World) -> None:
    path = world.evidence_copy("second.bin", b"second artefact bytes")
    world.cli("register", path, "--case", CASE, "--exhibit", "DE-02", "--description",
              "USB stick", "--id", "DE-02-usb", "--as", "de-examiner", expect=0)
    js = world.cli("artefact", "show", "DE-02-usb", "--json", expect=0).json
    assert js["description"] == "USB stick"
    lb = world.legal_basis()
    tr = world.dispatch(lb)
    js = world.cli("artefact", "show", world.art, "--json", expect=0).json
    assert js["open_transfer"] == tr
    assert js["open_transfer_detail"]["to_org"] == "nfi"
    world.cli("receive", tr, "--file", world.tampered(), "--as", "nl-custodian", expect=1)
    js = world.cli("artefact", "show", world.art, "--json", expect=0).json
    assert js["incidents"] == 1
    assert js["open_transfer"] is None
    assert "incidents:      1" in world.cli("artefact", "show", world.art, expect=0).out


def test_artefact_show_unknown_is_not_found(world: World) -> None:
    assert_error(world.cli("artefact", "show", "nope"), 4, "unknown artefact")


def test_artefact_list_filters_by_case(world: World) -> None:
    res = world.cli("artefact", "list", "--json", expect=0)
    assert [r["id"] for r in res.lines] == [world.art]
    res = world.cli("artefact", "list", "--case", CASE, expect=0)
    assert world.art in res.out
    world.cli("case", "open", "CASE-OTHER", "--as", "de-prosecutor", expect=0)
    assert world.cli("artefact", "list", "--case", "CASE-OTHER", "--json", expect=0).lines \
        == []
    assert_error(world.cli("artefact", "list", "--case", "CASE-NONE"), 4, "unknown case")


def test_case_show_and_list(world: World) -> None:
    lb = world.legal_basis()
    js = world.cli("case", "show", CASE, "--json", expect=0).json
    assert js["lead_org"] == "bka"
    assert js["members"] == ["nfi"]
    assert js["artefacts"] == [world.art]
    assert js["legal_bases"] == [lb]
    out = world.cli("case", "show", CASE, expect=0).out
    assert "Ransomware" in out
    assert world.art in out
    assert [r["id"] for r in world.cli("case", "list", "--json", expect=0).lines] == [CASE]
    assert_error(world.cli("case", "show", "CASE-NONE"), 4, "unknown case")


def test_transfers_pending_is_the_receivers_inbox(world: World) -> None:
    assert world.cli("transfers", "list", "--pending", "--as", "nl-custodian", "--json",
                     expect=0).lines == []
    res = world.cli("transfers", "list", "--pending", "--as", "nl-custodian", expect=0)
    assert "No transfers waiting" in res.out
    tr = world.dispatch(world.legal_basis())
    inbox = world.cli("transfers", "list", "--pending", "--as", "nl-custodian", "--json",
                      expect=0).lines
    assert [(t["id"], t["artefact"], t["to_org"], t["status"]) for t in inbox] == \
        [(tr, world.art, "nfi", "open")]
    assert tr in world.cli("transfers", "list", "--pending", "--as", "nl-custodian",
                           expect=0).out
    # The sender's organisation has nothing to receive; the full listing shows it.
    assert world.cli("transfers", "list", "--pending", "--as", "de-custodian", "--json",
                     expect=0).lines == []
    assert [t["id"] for t in world.cli("transfers", "list", "--json", expect=0).lines] == [tr]
    # Once received, it leaves the inbox.
    world.cli("receive", tr, "--file", world.evidence, "--as", "nl-custodian", expect=0)
    assert world.cli("transfers", "list", "--pending", "--as", "nl-custodian", "--json",
                     expect=0).lines == []
    assert world.cli("transfers", "list", "--artefact", world.art, "--json",
                     expect=0).lines[0]["status"] == "accepted"


def test_read_commands_through_a_server(world: World) -> None:
    """Server mode: the same commands, reads authorised by the server for ``--as``."""
    pytest.importorskip("uvicorn")
    from tests.integration.test_server_story import serving

    tr = world.dispatch(world.legal_basis())
    with serving(world.home) as url:
        def remote(*args: str, expect: int | None = 0) -> object:
            return world.cli("--server", url, *args, expect=expect)

        js = remote("artefact", "show", world.art, "--as", "nl-custodian", "--json").json
        assert js["exhibit"] == "DE-01"
        assert js["open_transfer"] == tr
        inbox = remote("transfers", "list", "--pending", "--as", "nl-custodian",
                       "--json").lines
        assert [t["id"] for t in inbox] == [tr]
        assert remote("case", "show", CASE, "--as", "nl-custodian", "--json").json[
            "artefacts"] == [world.art]
        assert [a["id"] for a in remote("artefact", "list", "--as", "de-examiner",
                                        "--json").lines] == [world.art]
        # An agency outside the case sees nothing of it.
        assert remote("artefact", "list", "--as", "fr-analyst", "--json").lines == []
        assert_error(remote("artefact", "show", world.art, "--as", "fr-analyst",
                            expect=None), 4, "unknown artefact")
        assert_error(remote("case", "show", CASE, "--as", "fr-analyst", expect=None), 4,
                     "unknown case")


# ---- help texts ---------------------------------------------------------------------------


def _all_command_paths() -> list[list[str]]:
    import typer.main

    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]

    def walk(cmd: object, prefix: list[str]) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(root, [])
    return paths


def test_help_texts_have_no_type_placeholders(cli: Cli) -> None:
    paths = _all_command_paths()
    assert ["artefact", "show"] in paths
    assert ["transfers", "list"] in paths
    assert ["case", "show"] in paths
    for path in paths:
        res = cli(*path, "--help", expect=0)
        usage = next(line for line in res.out.splitlines() if "Usage:" in line)
        assert "{" not in usage, usage
        for bad in ("<bool>", "<str>", "<path>", "<int>", "<list", "{file}"):
            assert bad not in res.out, f"custody {' '.join(path)} --help shows {bad!r}"
    reg = cli("register", "--help", expect=0).out
    assert "register [OPTIONS] FILE" in reg
    assert re.search(r"--case\s+CASE", reg)


def test_help_does_not_break_lines_mid_sentence(cli: Cli) -> None:
    out = cli("--help", expect=0).out
    # The init docstring spans two source lines; the help reflows it as one paragraph.
    line = next(x for x in out.splitlines() if " init " in x)
    assert not line.rstrip(" │").endswith("may also"), out


# ---- init: explicit admin roles ------------------------------------------------------------


def test_init_prints_the_admin_roles(cli: Cli) -> None:
    res = cli("init", "--origin", ORIGIN, "--org-name", "BKA", "--jurisdiction", "DE",
              "--no-passphrase", expect=0)
    assert "admin actor bka-admin with roles admin, examiner" in res.out
    assert cli("actor", "list", "--json", expect=0).lines[0]["roles"] == ["admin", "examiner"]


def test_init_admin_roles_option(tmp_path: Path) -> None:
    c = Cli(tmp_path / "h1")
    res = c("init", "--origin", ORIGIN, "--org-name", "BKA", "--jurisdiction", "DE",
            "--no-passphrase", "--admin-roles", "admin", "--json", expect=0)
    assert res.json["admin_roles"] == ["admin"]
    for bad, phrase in (("examiner", "must include admin"), ("admin,wizard", "unknown role")):
        c2 = Cli(tmp_path / f"h-{bad}")
        assert_error(c2("init", "--origin", ORIGIN, "--org-name", "BKA", "--jurisdiction",
                        "DE", "--no-passphrase", "--admin-roles", bad), 2, phrase)
        assert not (c2.home / "config.json").exists()


# ---- the demo --------------------------------------------------------------------------------


def test_demo_narrates_each_step_once(cli: Cli, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, bool]] = []
    real_progress = context.progress

    def spy(c: context.Ctx, label: str, total: int | None):  # type: ignore[no-untyped-def]
        calls.append((label, c.json))
        return real_progress(c, label, total)

    monkeypatch.setattr(context, "progress", spy)
    res = cli("demo", "--home", tmp_path / "demo", "--size-mib", "1", expect=0)
    out = res.out
    # The register step runs as a user's command: the progress bar is asked for (it shows
    # on a terminal only), and no --json swallowed it.
    assert any(label.startswith("Hashing disk01") and not js for label, js in calls)
    assert "Registered DE-01-disk" in out
    assert "Recorded legal basis MLA-2026-0042" in out
    assert "Dispatched DE-01-disk to nfi: transfer TR-0001" in out
    assert "Dispatched DE-01-disk to nfi: transfer TR-0002" in out
    assert "TR-0001" in out.split("transfers list --pending")[1]
    assert "Verdict: authentic" in out
    assert "Verdict: mismatch" in out
    # The custody table (its header) is printed once.
    assert out.count("ledger time (UTC)") == 1
