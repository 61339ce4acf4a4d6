"""Issue #11: a sealed evidence package moves between two agencies through ONE real server
(a ``custody serve`` process on SQLite, and on PostgreSQL when ``CUSTODY_TEST_PG_URL`` is
set), every step through the CLI of the agency's own home.

BKA (DE) seals an exhibit to NFI's (NL) encryption key (NFI's admin created it at NFI),
dispatches it, and uploads the package, after an upload that broke off half way; NFI
fetches it by transfer id (also continuing a download that broke off) and gets the very
bytes BKA sealed, opens them and accepts custody. France, outside the transfer, is told
the transfer does not exist. A transfer without a package is "not found" (exit 4), and a
package the server altered is refused (exit 1) and not kept."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cli.main import run
from ledger.home import Home
from ledger.store.remote import ActorLogin

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Res:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out.strip().splitlines()[-1])


def custody(home: Path, *args: str, server: str | None = None) -> Res:
    argv = ["--home", str(home), *(["--server", server] if server else []), *args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(argv)
    return Res(code, out.getvalue(), err.getvalue())


def ok(res: Res) -> Res:
    assert res.code == 0, res.err
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(op_home: Path, evidence: Path) -> Iterator[str]:
    """``custody serve --evidence-dir`` (packages then live in EVIDENCE/packages)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
    log = op_home.parent / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--home", str(op_home), "serve", "--port",
             str(port), "--evidence-dir", str(evidence)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def join(home: Path, server: str, actor: str) -> str:
    res = ok(custody(home, "join", "--server", server, "--id", actor, "--no-passphrase",
                     "--json"))
    return str(res.json["public_key"])


def broken_off_upload(url: str, home: Path, actor: str, package: Path, sha256: str,
                      send: int) -> int:
    """A PUT whose client sends ``send`` bytes of the package and then goes away. Returns
    how many bytes the server kept: those it had read when it noticed (the server drops
    what it had buffered but not yet handed to the route)."""
    token = ActorLogin(url, Home.resolve(home).load().actor(actor))()
    size = package.stat().st_size
    host, port = url.removeprefix("http://").split(":")
    head = (f"PUT /v1/packages/{sha256} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\nUpload-Length: {size}\r\n"
            f"Content-Length: {size}\r\nContent-Type: application/octet-stream\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode() + package.read_bytes()[:send])
        conn.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass
    seen: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until the partial upload stops growing
        probe = httpx.head(f"{url}/v1/packages/{sha256}", timeout=5,
                           headers={"Authorization": f"Bearer {token}"})
        if probe.status_code == 204:
            seen.append(int(probe.headers["Upload-Offset"]))
            if len(seen) >= 5 and len(set(seen[-5:])) == 1 and seen[-1] > 0:
                assert seen[-1] <= send
                return seen[-1]
        time.sleep(0.1)
    raise AssertionError(f"the broken-off upload left no partial package ({seen})")


def test_two_agencies_exchange_a_sealed_package_through_one_server(
        tmp_path: Path, backend: str, db_url: str) -> None:
    op, de, nl, fr = (tmp_path / n for n in ("operator", "de", "nl", "fr"))
    evidence = tmp_path / "disk02.E01"
    evidence.write_bytes(os.urandom(3 * 1024 * 1024 + 11))
    stored = tmp_path / "server-evidence"
    init = ["init", "--origin", "hub.example/custody", "--org-name", "Hub", "--org-id", "hub",
            "--jurisdiction", "NL", "--no-passphrase", "--json"]
    ok(custody(op, *init, *(["--database", db_url] if backend == "postgres" else [])))
    with serving(op, stored) as url:
        for name, cc in (("BKA", "DE"), ("NFI", "NL"), ("OFAC", "FR")):
            ok(custody(op, "org", "add", "--name", name, "--jurisdiction", cc, server=url))
        people = [(de, "bka", "de-examiner", "examiner"),
                  (de, "bka", "de-custodian", "custodian"),
                  (de, "bka", "de-prosecutor", "prosecutor"),
                  (nl, "nfi", "nl-custodian", "custodian"),
                  (fr, "ofac", "fr-examiner", "examiner"),
                  (nl, "nfi", "nl-admin", "admin")]  # last: then only NFI enrols for NFI
        for home, org, actor, role in people:
            key = join(home, url, actor)
            ok(custody(op, "actor", "enrol", "--org", org, "--name", actor, "--role", role,
                       "--id", actor, "--public-key", key, server=url))
        # NFI's own admin makes NFI's encryption key at NFI: only NFI can open its packages.
        ok(custody(nl, "org", "key", "rotate", "nfi", "--no-passphrase", "--as", "nl-admin"))
        assert list((nl / "keys" / "orgs").glob("nfi*.key"))

        ok(custody(de, "case", "open", "CASE-9", "--as", "de-prosecutor"))
        ok(custody(de, "case", "add-member", "CASE-9", "--org", "nfi", "--as",
                   "de-prosecutor"))
        lb = ok(custody(de, "legal-basis", "add", "--instrument", "mlat", "--reference",
                        "MLA-9", "--issuing-state", "NL", "--executing-state", "DE",
                        "--valid-until", "2099-12-31", "--case", "CASE-9", "--as",
                        "de-prosecutor", "--json")).json["legal_basis"]
        art = ok(custody(de, "register", str(evidence), "--case", "CASE-9", "--as",
                         "de-examiner", "--json")).json["artefact_id"]
        package = de / "disk02.E01.age"
        sent = ok(custody(de, "transfer", art, "--to", "nfi", "--purpose", "lab",
                          "--legal-basis", lb, "--seal-file", str(evidence), "--out",
                          str(package), "--as", "de-custodian", "--json")).json
        tr, digest = sent["transfer"], sent["package"]["sha256"]
        early = custody(nl, "fetch", tr, "--as", "nl-custodian")
        assert early.code == 4
        assert "does not hold the package" in early.err

        # The first upload breaks off; the command continues from where the server got to.
        kept = broken_off_upload(url, de, "de-custodian", package, digest,
                                 package.stat().st_size // 2)
        up = ok(custody(de, "package", "upload", str(package), "--as", "de-custodian",
                        "--json")).json
        assert (up["sha256"], up["status"], up["resumed_from"]) == (digest, "uploaded", kept)
        on_server = stored / "packages" / "sha256" / digest[:2] / digest
        assert on_server.read_bytes() == package.read_bytes()
        again = ok(custody(de, "package", "upload", str(package), "--as", "de-custodian",
                           "--json")).json
        assert again["status"] == "present"

        # France is outside the transfer: it does not exist for France.
        hidden = custody(fr, "fetch", tr, "--out", str(fr / "x.age"), "--as", "fr-examiner")
        assert hidden.code == 4, hidden.err
        assert not list(fr.glob("x.age*"))

        # NFI fetches it, continuing a download that broke off after 1000 bytes.
        got = nl / "incoming" / "disk02.E01.age"
        got.parent.mkdir()
        (got.parent / "disk02.E01.age.part").write_bytes(package.read_bytes()[:1000])
        fetched = ok(custody(nl, "fetch", tr, "--out", str(got), "--as", "nl-custodian",
                             "--json")).json
        assert fetched == {"transfer": tr, "path": str(got), "sha256": digest,
                           "size": package.stat().st_size, "format": "age-v1",
                           "resumed_from": 1000}
        assert got.read_bytes() == package.read_bytes()
        assert not (got.parent / "disk02.E01.age.part").exists()
        text = ok(custody(nl, "fetch", tr, "--out", str(nl / "again.age"), "--as",
                          "nl-custodian"))
        assert f"to {nl / 'again.age'}" in text.out.replace("\n", " ")

        accepted = ok(custody(nl, "receive", tr, "--package", str(got), "--as",
                              "nl-custodian", "--json")).json
        assert accepted["outcome"] == "accepted"
        assert accepted["custodian"] == "nfi"
        assert Path(accepted["file"]).read_bytes() == evidence.read_bytes()

        # A transfer without a package: nothing to fetch (exit 4).
        plain = ok(custody(nl, "transfer", art, "--to", "bka", "--purpose", "return",
                           "--legal-basis", lb, "--as", "nl-custodian", "--json")).json
        none = custody(de, "fetch", plain["transfer"], "--as", "de-custodian")
        assert none.code == 4
        assert "carries no package" in none.err

        # The operator's disk alters the stored package: the fetch refuses it (exit 1).
        data = bytearray(on_server.read_bytes())
        data[len(data) // 2] ^= 0xFF
        on_server.write_bytes(bytes(data))
        bad = nl / "tampered.age"
        refused = custody(de, "fetch", tr, "--out", str(bad), "--as", "de-custodian")
        assert refused.code == 1, refused.err
        assert "not the expected" in refused.err
        assert not bad.exists()
        assert not (nl / "tampered.age.part").exists()


def test_an_embedded_home_is_told_packages_move_through_a_server(tmp_path: Path) -> None:
    home = tmp_path / "solo"
    ok(custody(home, "init", "--origin", "solo.example/custody", "--org-name", "Solo",
               "--org-id", "solo", "--jurisdiction", "DE", "--no-passphrase", "--json"))
    package = tmp_path / "p.age"
    package.write_bytes(b"age-encryption.org/v1\n")
    for args in (("package", "upload", str(package)), ("fetch", "tr-1")):
        res = custody(home, *args)
        assert res.code == 2, res.err
        assert res.err.count("\n") == 1
        assert "move through a server" in res.err
