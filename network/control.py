"""A network that is up: status, block heights, a ping, the Raft leader, stopping and
starting one node, and ``down``."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

from ledger.core.errors import InvalidInput, NotFound
from ledger.fabric import wire
from network import fabcli, nodes, procs
from network.fabcli import StepFailed
from network.nodes import Layout
from network.procs import Proc

_LEADER = re.compile(r'^consensus_etcdraft_is_leader\{channel="([^"]+)"\} (\S+)$', re.M)


def _folder(folder: Path | str) -> Path:
    return Path(folder).expanduser().resolve()


def _profile(folder: Path) -> dict[str, Any]:
    from network.launch import load_profile

    return load_profile(folder).profile


def _peer_bin(records: list[Proc]) -> str:
    for proc in records:
        if proc.role == "peer":
            return proc.argv[0]
    raise NotFound("the network has no peer")  # pragma: no cover - every network has one


def admin_env(folder: Path, profile: dict[str, Any], cc: str) -> dict[str, str]:
    """Environment for the ``peer`` command acting as ``cc``'s admin against its peer."""
    org = profile["orgs"][cc]
    return nodes.admin_env(Layout(folder), org["msp_id"], Path(org["admin"]["msp_dir"]),
                           org["peer"]["address"], Path(org["peer"]["tls_ca"]))


def _orderer_args(profile: dict[str, Any], records: list[Proc]) -> list[str]:
    """``-o`` an orderer that runs (the first one when none is known to)."""
    running = {p.address for p in records if p.role == "orderer" and procs.alive(p)}
    chosen = next((o for o in profile["orderers"] if o["address"] in running),
                  profile["orderers"][0])
    return ["-o", chosen["address"], "--tls", "--cafile", chosen["tls_ca"]]


def ping(folder: Path, profile: dict[str, Any], records: list[Proc],
         timeout: float = 30.0) -> None:
    """Invoke ``ping`` endorsed by every organisation's peer and wait until each peer has
    committed it VALID. Raises StepFailed (naming the log) otherwise."""
    first = next(iter(profile["orgs"]))
    peers: list[str] = []
    for org in profile["orgs"].values():
        peers += ["--peerAddresses", org["peer"]["address"],
                  "--tlsRootCertFiles", org["peer"]["tls_ca"]]
    argv = [_peer_bin(records), "chaincode", "invoke", *_orderer_args(profile, records),
            "-C", profile["channel"], "-n", profile["chaincode"],
            "-c", json.dumps({"Args": [wire.FN_PING]}), *peers,
            "--waitForEvent", "--waitForEventTimeout", f"{timeout:.0f}s"]
    deadline = time.monotonic() + timeout
    while True:  # an orderer without a Raft leader (an election) answers 503: wait
        try:
            fabcli.run(argv, admin_env(folder, profile, first), Layout(folder).log("ping"),
                       "invoking ping on every peer", timeout=timeout + 30)
            return
        except fabcli.StepFailed as exc:
            if "SERVICE_UNAVAILABLE" not in exc.reason or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def heights(folder: Path, profile: dict[str, Any],
            records: list[Proc]) -> dict[str, int | None]:
    """Each organisation's peer's block height on the channel (None if it did not
    answer), asked with ``peer channel getinfo`` as the organisation's admin."""
    codes = list(profile["orgs"])
    peer_bin = _peer_bin(records)
    log = Layout(folder).log("getinfo")

    def one(cc: str) -> int | None:
        try:
            out = fabcli.run([peer_bin, "channel", "getinfo", "-c", profile["channel"]],
                             admin_env(folder, profile, cc), log, f"asking peer {cc}",
                             timeout=20)
        except StepFailed:
            return None
        start = out.find("{")
        try:
            return int(json.loads(out[start:])["height"]) if start >= 0 else None
        except (ValueError, KeyError):
            return None

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(codes)) as pool:
        return dict(zip(codes, pool.map(one, codes), strict=True))


def _is_leader(proc: Proc, channel: str) -> bool:
    port = proc.ports.get("operations")
    if not port or not procs.alive(proc):
        return False
    try:
        with urllib.request.urlopen(f"http://{nodes.HOST}:{port}/metrics",
                                    timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return False
    return any(ch == channel and float(v) == 1 for ch, v in _LEADER.findall(text))


def leader_of(records: list[Proc], channel: str = wire.CHANNEL) -> int | None:
    """The index of the orderer that is the channel's Raft leader (from each orderer's
    ``consensus_etcdraft_is_leader`` metric), or None when no orderer says it is."""
    for proc in records:
        if proc.role == "orderer" and _is_leader(proc, channel):
            return proc.index
    return None


def raft_leader(folder: Path | str, timeout: float = 0.0) -> int | None:
    """The Raft leader's orderer index, waiting up to ``timeout`` seconds for one."""
    records = procs.load(_folder(folder))
    deadline = time.monotonic() + timeout
    while True:
        found = leader_of(records)
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(0.2)


def status(folder: Path | str) -> dict[str, Any]:
    """Every recorded process (role, org, pid, alive, address) and each peer's block
    height (None for a peer that does not answer)."""
    path = _folder(folder)
    records = procs.load(path)
    if not records:
        raise NotFound(f"no network in {path} (no {procs.PROCESSES})")
    listed = [p.summary() for p in records]
    heights_: dict[str, int | None] = {}
    if Layout(path).profile.exists():
        profile = _profile(path)
        alive_peers = {p.org for p in records if p.role == "peer" and procs.alive(p)}
        heights_ = {cc: None for cc in profile["orgs"]}
        if alive_peers:
            heights_.update({cc: h for cc, h in heights(path, profile, records).items()
                             if cc in alive_peers})
    return {"dir": str(path), "running": any(p["alive"] for p in listed),
            "processes": listed, "heights": heights_}


def down(folder: Path | str, purge: bool = False) -> dict[str, Any]:
    """Stop exactly the processes the network started (SIGTERM, then SIGKILL after a
    grace period) and check that none is left. Idempotent. ``purge`` also removes the
    directory (only one that holds a network's ``processes.json``)."""
    path = _folder(folder)
    with procs.locked(path) if path.is_dir() else contextlib.nullcontext():
        records = procs.load(path)
        stopped = procs.stop(records)
        purged = False
        if purge and (path / procs.PROCESSES).exists():
            shutil.rmtree(path)
            purged = True
    return {"dir": str(path), "stopped": [p.summary() | {"alive": False} for p in stopped],
            "purged": purged}


def _node(path: Path, name: str) -> tuple[list[Proc], Proc]:
    records = procs.load(path)
    for proc in records:
        if proc.name == name:
            return records, proc
    raise NotFound(f"no process {name!r} in the network in {path}; it has: "
                   + ", ".join(p.name for p in records))


def stop_node(folder: Path | str, name: str) -> bool:
    """Stop one process of the network by name (``orderer1``, ``peer-DE``,
    ``chaincode-NL``). Returns whether it was running."""
    path = _folder(folder)
    with procs.locked(path):
        _records, proc = _node(path, name)
        return bool(procs.stop([proc]))


def start_node(folder: Path | str, name: str, timeout: float = 60.0) -> None:
    """Start one stopped process of the network again (same command, environment, data
    and ports) and wait until it listens. Refuses one that runs."""
    path = _folder(folder)
    with procs.locked(path):
        records, proc = _node(path, name)
        if procs.alive(proc):
            raise InvalidInput(f"{name} is already running (pid {proc.pid})")
        procs.start(proc)
        procs.save(path, records)
    try:
        fabcli.wait_listening(proc, [proc.ports["listen"]], time.monotonic() + timeout)
    except StepFailed as exc:
        from ledger.core.errors import UpstreamError

        raise UpstreamError(exc.sentence("starting the node failed")) from None


def stop_orderer(folder: Path | str, index: int) -> bool:
    return stop_node(folder, f"orderer{index}")


def start_orderer(folder: Path | str, index: int, timeout: float = 60.0) -> None:
    start_node(folder, f"orderer{index}", timeout)
