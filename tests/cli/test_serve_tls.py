"""Issue 16 from the command line: ``custody serve --tls-cert/--tls-key/--client-ca
--security-actor`` in a real process, ``custody join --ca/--client-cert/--client-key``
pinning the files into the client's home, and the global ``--ca/--client-cert/--client-key``
overrides. Certificates are made by the test (``tests/pki.py``)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_server_story import ROOT, Res, custody, free_port, ok
from tests.pki import Pki, make_pki

pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}


@contextlib.contextmanager
def serving_tls(op: Path, pki: Pki, *extra: str) -> Iterator[tuple[str, str]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--home", str(op), "serve", "--port", str(port),
         "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), *extra],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                # A bare TCP connect: with mutual TLS the handshake needs a certificate.
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start: {proc.stderr.read()}")  # type: ignore[union-attr]
            time.sleep(0.1)
        yield url, ""
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=10)
        serving_tls.last_stderr = err  # type: ignore[attr-defined]


def one_sentence(res: Res) -> str:
    text = res.err.strip()
    assert text, res.err
    assert "Traceback" not in text, res.err
    assert len(text.splitlines()) == 1, text
    return text


@pytest.fixture
def operator(tmp_path: Path) -> Path:
    op = tmp_path / "operator"
    ok(custody(op, "init", "--origin", "hub.example/custody", "--org-name", "Hub",
               "--org-id", "hub", "--admin-id", "op-admin", "--jurisdiction", "NL",
               "--no-passphrase", "--json"))
    for name, cc in (("BKA", "DE"), ("NFI", "NL")):
        ok(custody(op, "org", "add", "--id", name.lower(), "--name", name,
                   "--jurisdiction", cc, "--json"))
    return op


def test_mutual_tls_from_join_to_a_refused_login(tmp_path: Path, operator: Path,
                                                 pki: Pki) -> None:
    de, stranger = tmp_path / "de", tmp_path / "stranger"
    bka_cert, bka_key = pki.clients["bka"]
    nfi_cert, nfi_key = pki.clients["nfi"]
    with serving_tls(operator, pki, "--client-ca", str(pki.ca),
                     "--security-actor", "op-admin") as (url, _):
        # Without the CA the server is not trusted: one sentence naming the host, exit 1.
        res = custody(stranger, "join", "--server", url, "--id", "x", "--no-passphrase")
        assert res.code == 1
        assert "127.0.0.1" in one_sentence(res)
        assert "not trusted" in res.err
        assert not (stranger / "config.json").exists()
        # With the CA but no client certificate: refused at the handshake (exit 5).
        res = custody(stranger, "join", "--server", url, "--id", "x", "--no-passphrase",
                      "--ca", str(pki.ca))
        assert res.code == 5
        assert "127.0.0.1" in one_sentence(res)
        assert not (stranger / "config.json").exists()

        # The agency joins with its certificate; the files are pinned in its home.
        joined = ok(custody(de, "join", "--server", url, "--id", "de-examiner",
                            "--no-passphrase", "--ca", str(pki.ca), "--client-cert",
                            str(bka_cert), "--client-key", str(bka_key), "--json")).json
        pinned = json.loads((de / "config.json").read_text())["tls"]
        assert pinned == {"ca": "tls/ca.pem", "cert": "tls/client-cert.pem",
                          "key": "tls/client-key.pem"}
        assert (de / "tls" / "ca.pem").read_bytes() == pki.ca.read_bytes()
        assert (de / "tls" / "client-key.pem").stat().st_mode & 0o777 == 0o600
        assert joined["tls"]["cert"] == str(de / "tls" / "client-cert.pem")
        ok(custody(operator, "actor", "enrol", "--org", "bka", "--name", "Prosecutor",
                   "--role", "prosecutor", "--id", "de-examiner", "--public-key",
                   joined["public_key"], "--json"))

        # Every later command uses the pinned files: a write and a read over mutual TLS.
        size_before = _log_size(operator)
        ok(custody(de, "case", "open", "C-1"))
        assert _log_size(operator) == size_before + 1
        assert ok(custody(de, "status", "--json")).json["size"] == size_before + 1
        size_before += 1
        # Agency B's certificate given on the command line for an agency A home: the
        # override is used, and logging in as a bka actor with an nfi certificate is
        # 403 (exit 3) and a denied entry on the log, signed by the security actor.
        res = custody(de, "--client-cert", str(nfi_cert), "--client-key", str(nfi_key),
                      "status", "--json")
        assert res.code == 3, res.err
        assert "organisation" in one_sentence(res)
        assert _log_size(operator) == size_before + 1
        lines = ok(custody(operator, "log", "entries", "--json")).out.splitlines()
        leaf = base64.b64decode(json.loads(lines[-1])["entry"])
        assert b'"auth.denied"' in leaf
        assert b'"de-examiner"' in leaf
        assert b'"nfi"' in leaf
        # --client-cert without --client-key is a usage error.
        res = custody(de, "--client-cert", str(nfi_cert), "status")
        assert res.code == 2
    line = serving_tls.last_stderr  # type: ignore[attr-defined]
    assert f"on {url}" in line
    assert "https://" in line
    assert "client certificates required" in line


def _log_size(home: Path) -> int:
    return int(ok(custody(home, "status", "--json")).json["size"])


def test_serve_refuses_unsafe_settings_in_one_sentence(tmp_path: Path, operator: Path,
                                                       pki: Pki) -> None:
    env_secret = {"CUSTODY_TOKEN_SECRET": "s" * 48}
    with _env_set(env_secret):
        res = custody(operator, "serve", "--production", "--host", "0.0.0.0",  # noqa: S104
                      "--port", str(free_port()))
    assert res.code == 2
    assert "plain HTTP" in one_sentence(res)
    loose = tmp_path / "loose.key"
    loose.write_bytes(pki.server_key.read_bytes())
    loose.chmod(0o644)
    res = custody(operator, "serve", "--port", str(free_port()), "--tls-cert",
                  str(pki.server_cert), "--tls-key", str(loose))
    assert res.code == 2
    assert "chmod" in one_sentence(res)
    res = custody(operator, "serve", "--port", str(free_port()), "--tls-cert",
                  str(pki.server_cert))
    assert res.code == 2
    assert "together" in one_sentence(res)
    res = custody(operator, "serve", "--port", str(free_port()), "--tls-cert",
                  str(tmp_path / "missing.pem"), "--tls-key", str(pki.server_key))
    assert res.code == 2
    assert "missing.pem" in one_sentence(res)
    res = custody(operator, "serve", "--port", str(free_port()), "--tls-cert",
                  str(pki.server_cert), "--tls-key", str(pki.server_key), "--client-ca",
                  str(pki.ca))
    assert res.code == 2
    assert "security" in one_sentence(res)
    res = custody(operator, "serve", "--port", str(free_port()), "--tls-cert",
                  str(pki.server_cert), "--tls-key", str(pki.server_key), "--client-ca",
                  str(pki.ca), "--security-actor", "nobody")
    assert res.code == 2
    assert "nobody" in one_sentence(res)


def test_join_checks_the_client_files_before_anything_is_written(tmp_path: Path,
                                                                 pki: Pki) -> None:
    home = tmp_path / "c"
    cert, key = pki.clients["bka"]
    url = "https://127.0.0.1:9"
    res = custody(home, "join", "--server", url, "--id", "x", "--no-passphrase",
                  "--client-cert", str(cert))
    assert res.code == 2
    assert "together" in one_sentence(res)
    loose = tmp_path / "loose.key"
    loose.write_bytes(key.read_bytes())
    loose.chmod(0o640)
    res = custody(home, "join", "--server", url, "--id", "x", "--no-passphrase",
                  "--client-cert", str(cert), "--client-key", str(loose))
    assert res.code == 2
    assert "chmod 600" in one_sentence(res)
    res = custody(home, "join", "--server", "http://192.0.2.1:8600", "--id", "x",
                  "--no-passphrase", "--ca", str(pki.ca))
    assert res.code == 2
    assert "https://" in one_sentence(res)
    assert not home.exists() or not (home / "config.json").exists()


@contextlib.contextmanager
def _env_set(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_plain_http_gets_nothing_from_the_tls_port(operator: Path, pki: Pki) -> None:
    with serving_tls(operator, pki) as (url, _):
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://") + "/v1/log", timeout=5)
        r = httpx.get(url + "/v1/health", verify=ssl.create_default_context(cafile=str(pki.ca)),
                      timeout=5)
        assert r.status_code == 200
        assert r.headers["strict-transport-security"].startswith("max-age=")


def test_serve_with_two_workers_answers_on_one_port(operator: Path, pki: Pki) -> None:
    """``custody serve --workers 2``: two processes behind the one TLS port."""
    with serving_tls(operator, pki, "--workers", "2") as (url, _):
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(url + "/v1/log", verify=ctx, timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the workers did not answer"
                time.sleep(0.2)
        assert r.status_code == 200
        assert r.json()["size"] >= 1
    assert "2 workers" in serving_tls.last_stderr  # type: ignore[attr-defined]
