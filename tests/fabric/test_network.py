"""``network`` and ``custody network up|status|down`` against REAL Fabric processes.

The session network (``fabric_network``: DE, NL, FR, 3 Raft orderers) is shared with the
other Fabric tests; the tests here that need to stop a whole network bring up their own
small one (DE, 1 orderer) in ``tmp_path``.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

import network
from ledger.core.errors import UpstreamError
from ledger.fabric import wire
from network import binaries, control, procs
from network.msp import P256_N, first_bad_certificate, generate_org
from tests.cli.conftest import assert_error, invoke
from tests.fabric.conftest import ORDERERS, ORGS

pytestmark = pytest.mark.fabric


# ---- helpers ---------------------------------------------------------------------------


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _tlv_size(data: bytes) -> int:
    """The whole length (header + content) of the DER element at the start of data."""
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    return 2 + count + int.from_bytes(data[2:2 + count], "big")


def flip_to_high_s(path: Path) -> None:
    """Rewrite the certificate in ``path`` with S replaced by n - S: the signature still
    verifies (ECDSA is malleable), but it is high-S, which Fabric's MSP breaks on."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    r, s = decode_dss_signature(cert.signature)
    high = encode_dss_signature(r, P256_N - s)
    der = cert.public_bytes(serialization.Encoding.DER)
    tbs = cert.tbs_certificate_bytes
    body = der[der.index(tbs):]
    alg = body[len(tbs):len(tbs) + _tlv_size(body[len(tbs):])]
    new = _der(0x30, tbs + alg + _der(0x03, b"\x00" + high))
    pem = x509.load_der_x509_certificate(new).public_bytes(serialization.Encoding.PEM)
    path.write_bytes(pem)
    assert decode_dss_signature(x509.load_pem_x509_certificate(pem).signature)[1] > P256_N // 2


def _gone(pid: int, start_time: int) -> bool:
    """No process with this pid and start time (a reused pid is another process)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[19]) != start_time or fields[0] in ("Z", "X")


def _equal_heights(folder: Path, at_least: int, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        heights = network.status(folder)["heights"]
        values = set(heights.values())
        if len(values) == 1 and None not in values and min(values) >= at_least:
            return heights
        assert time.monotonic() < deadline, f"peer heights differ: {heights}"
        time.sleep(0.5)


# ---- the session network ------------------------------------------------------------


def test_every_process_of_the_network_runs(fabric_network: network.Profile) -> None:
    info = network.status(fabric_network.dir)
    roles = Counter(p["role"] for p in info["processes"])
    assert roles == {"orderer": ORDERERS, "peer": len(ORGS), "chaincode": len(ORGS)}
    assert info["running"]
    for proc in info["processes"]:
        assert proc["alive"], proc
        assert Path(f"/proc/{proc['pid']}").exists()
    records = procs.load(fabric_network.dir)
    assert all(r.start_time > 0 and r.argv for r in records)
    assert {r.org for r in records if r.role == "chaincode"} == set(ORGS)


def test_the_profile_has_the_agreed_shape(fabric_network: network.Profile) -> None:
    prof = fabric_network.profile
    assert prof == json.loads((fabric_network.dir / "network.json").read_text())
    assert set(prof) == {"version", "fabric", "channel", "chaincode", "origin", "orgs",
                         "orderers"}
    assert (prof["version"], prof["fabric"]) == (1, binaries.VERSION)
    assert (prof["channel"], prof["chaincode"]) == (wire.CHANNEL, wire.CHAINCODE)
    assert prof["origin"] == network.DEFAULT_ORIGIN
    assert list(prof["orgs"]) == list(ORGS)
    package_ids, addresses = set(), set()
    for cc, org in prof["orgs"].items():
        assert set(org) == {"msp_id", "peer", "client", "admin", "chaincode", "node_dir"}
        assert org["msp_id"] == wire.msp_id(cc)
        assert set(org["peer"]) == {"address", "tls_ca", "server_name"}
        assert org["peer"]["server_name"] == "127.0.0.1"
        assert set(org["admin"]) == {"cert", "key", "msp_dir"}
        assert set(org["chaincode"]) == {"address", "package_id"}
        assert org["chaincode"]["package_id"].startswith(f"custody-{cc}:")
        package_ids.add(org["chaincode"]["package_id"])
        for path in (org["peer"]["tls_ca"], org["client"]["cert"], org["client"]["key"],
                     org["admin"]["cert"], org["admin"]["key"]):
            assert Path(path).is_absolute(), path
            assert Path(path).is_file(), path
        assert Path(org["admin"]["msp_dir"]).is_dir()
        assert Path(org["node_dir"]).is_dir()
        client = x509.load_pem_x509_certificate(Path(org["client"]["cert"]).read_bytes())
        ous = client.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
        assert [a.value for a in ous] == ["client"]
        addresses.update({org["peer"]["address"], org["chaincode"]["address"]})
    assert len(package_ids) == len(ORGS)  # each organisation runs its own service
    assert len(prof["orderers"]) == ORDERERS
    for orderer in prof["orderers"]:
        assert set(orderer) == {"address", "admin_address", "tls_ca"}
        assert Path(orderer["tls_ca"]).is_file()
        addresses.update({orderer["address"], orderer["admin_address"]})
    assert len(addresses) == 2 * len(ORGS) + 2 * ORDERERS
    assert all(a.startswith("127.0.0.1:") for a in addresses)


def test_every_peer_joined_the_channel_at_the_same_height(
        fabric_network: network.Profile) -> None:
    # genesis, the approvals, the commit and the first ping: at least 4 blocks
    heights = _equal_heights(fabric_network.dir, at_least=4)
    assert set(heights) == set(ORGS)


def test_a_ping_endorsed_by_every_org_commits_valid(fabric_network: network.Profile) -> None:
    before = max(network.status(fabric_network.dir)["heights"].values())
    # --waitForEvent on every peer: exit 0 only once EVERY peer committed it VALID
    control.ping(fabric_network.dir, fabric_network.profile,
                 procs.load(fabric_network.dir))
    _equal_heights(fabric_network.dir, at_least=before + 1)


def test_the_raft_leader_is_found_and_replaced_when_killed(
        fabric_network: network.Profile) -> None:
    folder = fabric_network.dir
    leader = network.raft_leader(folder, timeout=30)
    assert leader in range(ORDERERS)
    assert network.stop_orderer(folder, leader)
    try:
        started = time.monotonic()
        deadline = started + 30
        new = None
        while new is None or new == leader:
            assert time.monotonic() < deadline, "no new Raft leader within 30 s"
            new = network.raft_leader(folder)
            time.sleep(0.2)
        control.ping(folder, fabric_network.profile, procs.load(folder))
    finally:
        network.start_orderer(folder, leader)
    assert all(p["alive"] for p in network.status(folder)["processes"])


def test_the_msp_checker_passes_and_names_a_flipped_file(
        fabric_network: network.Profile, tmp_path: Path) -> None:
    assert network.check_msp(fabric_network.dir) is None
    copy = tmp_path / "crypto"
    shutil.copytree(fabric_network.dir / "crypto", copy)
    target = copy / "NL" / "peer" / "tls" / "cert.pem"
    flip_to_high_s(target)
    bad = first_bad_certificate(copy)
    assert bad is not None
    assert bad.path == target
    assert "high-S" in bad.reason


# ---- without the session network -----------------------------------------------------


def test_the_msp_checker_names_the_first_wrong_file(tmp_path: Path) -> None:
    generate_org(tmp_path / "DE", "DE", "DEMSP", {"peer": "peer", "admin": "admin"}, "DE")
    assert first_bad_certificate(tmp_path) is None
    certs = sorted(p for p in tmp_path.rglob("*.pem") if b"CERTIFICATE" in p.read_bytes())
    assert len(certs) >= 10
    flip_to_high_s(certs[-1])
    flip_to_high_s(certs[3])
    bad = first_bad_certificate(tmp_path)
    assert bad is not None
    assert bad.path == certs[3], bad
    assert str(certs[3]) in str(bad)


def test_down_stops_exactly_what_up_started_and_is_idempotent(tmp_path: Path) -> None:
    folder = tmp_path / "net"
    res = invoke(["network", "up", "--orgs", "de", "--orderers", "1", "--dir", str(folder),
                  "--json"])
    assert res.code == 0, res.err
    assert res.json["orgs"] == ["DE"]
    assert res.json["orderers"] == 1
    status = invoke(["network", "status", "--dir", str(folder), "--json"]).json
    assert [p["alive"] for p in status["processes"]] == [True, True, True]
    assert status["heights"] == {"DE": 4}
    records = [(r.pid, r.start_time) for r in procs.load(folder)]

    again = invoke(["network", "up", "--orgs", "DE", "--orderers", "1", "--dir", str(folder)])
    assert_error(again, 2, "already holds a running network")

    down = invoke(["network", "down", "--dir", str(folder), "--json"])
    assert down.code == 0, down.err
    assert sorted(p["pid"] for p in down.json["stopped"]) == sorted(p for p, _s in records)
    for pid, start_time in records:
        assert _gone(pid, start_time), f"pid {pid} is still running"
        assert pid not in procs._CHILDREN  # reaped, not left a zombie
    second = invoke(["network", "down", "--dir", str(folder)])
    assert second.code == 0
    assert "Nothing is running" in second.out
    assert (folder / "network.json").is_file()  # the data is kept

    # the stopped network starts again from its data, then is purged
    res = invoke(["network", "up", "--orgs", "DE", "--orderers", "1", "--dir", str(folder)])
    assert res.code == 0, res.err
    status = invoke(["network", "status", "--dir", str(folder), "--json"]).json
    assert all(p["alive"] for p in status["processes"])
    assert status["heights"]["DE"] >= 5  # the earlier blocks and one more ping
    purge = invoke(["network", "down", "--dir", str(folder), "--purge", "--json"])
    assert purge.code == 0
    assert purge.json["purged"]
    assert len(purge.json["stopped"]) == 3
    assert not folder.exists()


def test_a_failed_up_stops_every_process_and_names_the_step_and_log(tmp_path: Path) -> None:
    folder = tmp_path / "net"
    broken = [sys.executable, "-c", "raise SystemExit('no chaincode here')"]
    with pytest.raises(UpstreamError) as caught:
        network.up("DE,NL", folder, orderers=1, chaincode_command=broken)
    message = str(caught.value)
    assert "network up failed while starting chaincode-DE" in message
    assert str(folder / "logs" / "chaincode-DE.log") in message
    records = procs.load(folder)
    assert len(records) >= 3
    assert not any(procs.alive(r) for r in records)
    assert all(_gone(r.pid, r.start_time) for r in records)
    assert not {r.pid for r in records} & set(procs._CHILDREN)
    again = invoke(["network", "up", "--orgs", "DE", "--dir", str(folder)])
    assert_error(again, 2, "down --purge")


def test_ctrl_c_during_up_stops_every_process(tmp_path: Path) -> None:
    folder = tmp_path / "net"

    def interrupt_at_join(step: str) -> None:
        if step.startswith("Joining the peers"):
            raise KeyboardInterrupt

    with pytest.raises(network.Interrupted) as caught:
        network.up("DE", folder, orderers=1, progress=interrupt_at_join)
    assert "interrupted while joining the peers" in caught.value.sentence
    records = procs.load(folder)
    assert len(records) == 3
    assert all(_gone(r.pid, r.start_time) for r in records)
    assert not {r.pid for r in records} & set(procs._CHILDREN)  # every child reaped


@pytest.mark.parametrize(("args", "phrase"), [
    (["--orgs", "DE,XX"], "'XX' in --orgs is not an ISO 3166-1 alpha-2 country code"),
    (["--orgs", "UK"], "'UK' in --orgs is not an ISO 3166-1"),
    (["--orgs", ","], "at least one"),
    (["--orgs", "DE,de"], "twice"),
    (["--orgs", "DE", "--orderers", "2"], "--orderers must be 3"),
    (["--orgs", "DE", "--orderers", "three"], "--orderers"),
])
def test_up_refuses_bad_input_in_one_sentence(tmp_path: Path, args: list[str],
                                              phrase: str) -> None:
    folder = tmp_path / "net"
    assert_error(invoke(["network", "up", *args, "--dir", str(folder)]), 2, phrase)
    assert not folder.exists()


def test_a_missing_go_says_what_to_install(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-go-here"))
    monkeypatch.setenv(binaries.CACHE_ENV, str(cache))
    folder = tmp_path / "net"
    res = invoke(["network", "up", "--orgs", "DE,NL", "--dir", str(folder)])
    assert_error(res, 2, "needs the Go toolchain")
    assert "install it" in res.err
    assert "go.dev" in res.err
    assert not folder.exists()
    assert list(cache.iterdir()) == []


def test_a_foreign_cache_directory_is_never_replaced(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "mine"
    cache.mkdir()
    (cache / "notes.txt").write_text("keep me")
    monkeypatch.setenv(binaries.CACHE_ENV, str(cache))
    res = invoke(["network", "up", "--orgs", "DE", "--dir", str(tmp_path / "net")])
    assert_error(res, 2, "is not a cache of Fabric binaries")
    assert (cache / "notes.txt").read_text() == "keep me"


def test_status_of_a_directory_without_a_network_is_not_found(tmp_path: Path) -> None:
    assert_error(invoke(["network", "status", "--dir", str(tmp_path)]), 4, "no network")


@pytest.mark.slow
def test_the_binaries_build_from_source(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole build path: go mod download, copy without vendor/, go build, rename."""
    cache = tmp_path / "cache" / binaries.VERSION
    monkeypatch.setenv(binaries.CACHE_ENV, str(cache))
    said: list[str] = []
    built = binaries.ensure(said.append)
    assert built.root == cache
    assert binaries.cached(cache) == built
    assert said[0].startswith("Building the Fabric binaries")
    for program in binaries.PROGRAMS:
        assert (cache / "bin" / program).is_file()
    assert (cache / "sampleconfig" / "core.yaml").is_file()
    # nothing half-built is left beside the cache
    assert sorted(p.name for p in cache.parent.iterdir() if p.is_dir()) == [binaries.VERSION]
    assert binaries.ensure(said.append) == built  # the second call only reads the cache
