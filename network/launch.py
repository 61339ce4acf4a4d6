"""``network up``: a whole network in a directory, all or nothing.

The steps, each named in the one-sentence error if it fails (with the log to read):
certificates, channel configuration and genesis block, orderers / peers / chaincode
services started, orderers joined to the channel (channel participation, no system
channel), a Raft leader, peers joined, each organisation's chaincode package installed
and approved, the definition committed, and finally a ``ping`` endorsed by EVERY
organisation's peer committed VALID with all peers at the same height. On any failure,
or Ctrl-C, every process started is stopped before the error is raised; the directory is
kept for its logs.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.core.errors import InvalidInput, LedgerError, UpstreamError
from ledger.fabric import wire
from network import binaries, configtx, fabcli, nodes, package, procs
from network.fabcli import StepFailed
from network.nodes import Layout, addr
from network.procs import Proc

if TYPE_CHECKING:  # cryptography (the fabric extra) is loaded only to generate material
    from network import msp

DEFAULT_ORIGIN = "custody.consortium"
ORDERER_COUNTS = (1, 3)
CHAINCODE_VERSION = "1.0"
SEQUENCE = "1"
#: Seconds for a started process to listen, and for a Raft leader.
READY_TIMEOUT = 60.0
#: Seconds for the first ping endorsed by every organisation to commit VALID.
PING_TIMEOUT = 240.0
PING_ARGS = json.dumps({"Args": [wire.FN_PING]})

Say = Callable[[str], None]


@dataclass(frozen=True)
class Profile:
    """A running network: its directory and its connection profile (``network.json``)."""

    dir: Path
    profile: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.dir / "network.json"

    @property
    def orgs(self) -> list[str]:
        return list(self.profile["orgs"])


def plural(count: int, noun: str) -> str:
    suffix = "" if count == 1 else "es" if noun.endswith("s") else "s"
    return f"{count} {noun}{suffix}"


def parse_orgs(orgs: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"de, NL"`` or ``["de", "NL"]`` -> ``["DE", "NL"]``; refuses unknown or repeated
    country codes."""
    from ledger.core.vocab import COUNTRIES

    items = orgs.split(",") if isinstance(orgs, str) else list(orgs)
    codes = [c.strip().upper() for c in items if c.strip()]
    if not codes:
        raise InvalidInput("--orgs needs at least one ISO 3166-1 alpha-2 country code, "
                           "e.g. DE,NL,FR")
    for code in codes:
        if code not in COUNTRIES:
            raise InvalidInput(f"{code!r} in --orgs is not an ISO 3166-1 alpha-2 country "
                               "code (e.g. DE, NL, FR; use GB and GR, not UK and EL)")
    if len(set(codes)) != len(codes):
        raise InvalidInput("--orgs names an organisation twice: " + ",".join(codes))
    return codes


def check_orderers(count: int) -> int:
    if count not in ORDERER_COUNTS:
        raise InvalidInput(f"--orderers must be 3 (Raft that survives one orderer down) or "
                           f"1, not {count}")
    return count


def check_origin(origin: str) -> str:
    if not origin or any(ch.isspace() for ch in origin) or "+" in origin:
        raise InvalidInput(f"--origin {origin!r} must be a non-empty name without spaces "
                           "or '+', e.g. custody.consortium")
    return origin


def load_profile(folder: Path | str) -> Profile:
    """The profile of the network in ``folder`` (whether it runs or not)."""
    folder = Path(folder).expanduser().resolve()
    path = Layout(folder).profile
    try:
        return Profile(folder, json.loads(path.read_text()))
    except FileNotFoundError:
        from ledger.core.errors import NotFound

        raise NotFound(f"no network in {folder} (no network.json)") from None


def up(orgs: str | list[str] | tuple[str, ...], folder: Path | str, orderers: int = 3,
       origin: str | None = None, *, progress: Say | None = None,
       chaincode_command: list[str] | None = None,
       ping_timeout: float = PING_TIMEOUT) -> Profile:
    """Bring up a network of one peer per organisation in ``folder`` and return its
    profile once a ping endorsed by every organisation has committed VALID.

    ``folder`` must be new or empty, or hold this network stopped (it is then started
    again from its data). ``origin`` defaults to :data:`DEFAULT_ORIGIN` (or, for a
    stopped network, to its own). ``chaincode_command`` replaces ``python -m chaincode`` (the
    service gets CHAINCODE_SERVER_ADDRESS and CORE_CHAINCODE_ID_NAME)."""
    import sys

    codes = parse_orgs(orgs)
    count = check_orderers(orderers)
    if origin is not None:
        check_origin(origin)
    lay = Layout(Path(folder).expanduser().resolve())
    say = progress or (lambda _m: None)
    _check_dir(lay, codes, count, origin)  # refuse early, before a build
    bins = binaries.ensure(say)
    command = chaincode_command or [sys.executable, "-m", "chaincode"]
    with procs.locked(lay.dir):
        resume = _check_dir(lay, codes, count, origin)
        launch = _Launch(lay, codes, count, origin or DEFAULT_ORIGIN, bins, say, command,
                         ping_timeout)
        return launch.run(resume)


def _check_dir(lay: Layout, codes: list[str], count: int, origin: str | None) -> bool:
    """Whether ``lay.dir`` holds this network stopped (to resume); raises InvalidInput
    when it holds a running network, another network, or anything else."""
    if not lay.dir.exists():
        return False
    if not lay.dir.is_dir():
        raise InvalidInput(f"{lay.dir} is not a directory")
    records = procs.load(lay.dir)
    running = [p for p in records if procs.alive(p)]
    if running:
        raise InvalidInput(f"{lay.dir} already holds a running network ({len(running)} "
                           f"processes); stop it first with custody network down --dir "
                           f"{lay.dir}")
    if lay.profile.exists():
        prof = json.loads(lay.profile.read_text())
        if list(prof["orgs"]) != codes or len(prof["orderers"]) != count:
            raise InvalidInput(f"{lay.dir} holds a stopped network of "
                               f"{','.join(prof['orgs'])} with {len(prof['orderers'])} "
                               "orderers; start it with those --orgs and --orderers, or "
                               "choose another directory")
        if origin is not None and origin != prof["origin"]:
            raise InvalidInput(f"{lay.dir} holds a stopped network of origin "
                               f"{prof['origin']!r}, not {origin!r}")
        return True
    if any(p.name != procs.LOCK for p in lay.dir.iterdir()):
        hint = (" (a network that failed to come up: remove it with custody network down "
                "--purge)" if (lay.dir / procs.PROCESSES).exists() else "")
        raise InvalidInput(f"{lay.dir} is not empty and holds no network{hint}; choose a "
                           "new or empty directory")
    return False


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Ignore Ctrl-C while stopping what was started (a second Ctrl-C must not leave
    processes behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during ``network up``: every process was stopped; ``sentence`` says where."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence


class _Launch:
    def __init__(self, lay: Layout, codes: list[str], count: int, origin: str,
                 bins: binaries.Binaries, say: Say, command: list[str],
                 ping_timeout: float) -> None:
        self.lay, self.codes, self.count, self.origin = lay, codes, count, origin
        self.bins, self.say, self.command = bins, say, command
        self.ping_timeout = ping_timeout
        self.procs: list[Proc] = []
        self.step = "preparing the directory"
        self.orgs: dict[str, msp.Org] = {}
        self.orderer_org: msp.Org | None = None
        self.package_ids: dict[str, str] = {}
        self.profile: dict[str, Any] = {}

    # ---- the frame: all or nothing ----------------------------------------------------

    def run(self, resume: bool) -> Profile:
        try:
            if resume:
                self._resume()
            else:
                self._fresh()
        except BaseException as exc:
            self._abort(exc)
            raise  # pragma: no cover - _abort always raises
        return load_profile(self.lay.dir)

    def _abort(self, exc: BaseException) -> None:
        with _no_interrupts():
            try:
                procs.stop(self.procs)
            except UpstreamError as stop_error:
                raise UpstreamError(f"network up failed while {self.step}, and then "
                                    f"{stop_error.message}") from exc
        started = len(self.procs)
        tail = (f"; {'the one process' if started == 1 else f'all {started} processes'} "
                "it started are stopped" if started else "")
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(f"network up interrupted while {self.step}{tail}") from None
        if isinstance(exc, StepFailed):
            raise UpstreamError(exc.sentence() + tail) from None
        if isinstance(exc, LedgerError):
            raise exc
        log = self.lay.logs
        raise UpstreamError(f"network up failed while {self.step}: {exc!r} (logs in "
                            f"{log}){tail}") from exc

    def _at(self, step: str) -> None:
        self.step = step
        self.say(step[0].upper() + step[1:])

    # ---- a new network ----------------------------------------------------------------

    def _fresh(self) -> None:
        self.lay.dir.mkdir(parents=True, exist_ok=True)
        self.lay.logs.mkdir(exist_ok=True)
        procs.save(self.lay.dir, [])  # from now on, down --purge can clean up
        self._at("generating certificates")
        self._crypto()
        self._at("writing the channel configuration")
        self._config()
        self._at("creating the channel's genesis block")
        self._genesis()
        n = len(self.codes)
        self._at(f"starting {plural(self.count, 'orderer')}, {plural(n, 'peer')} and "
                 f"{plural(n, 'chaincode service')}")
        self._start_all()
        self._join_orderers()
        self._at("electing a Raft leader")
        self._wait_leader()
        self._at("joining the peers to channel " + wire.CHANNEL)
        self._join_peers()
        self._at("installing the chaincode packages")
        self._install()
        self._at("approving the chaincode definition")
        self._approve()
        self._at("committing the chaincode definition")
        self._commit()
        self.profile = self._profile()
        self._ready()
        self._write_profile()

    def _resume(self) -> None:
        self.step = "restarting the stopped network"
        self.say(f"Starting the stopped network in {self.lay.dir} again")
        self.procs = procs.load(self.lay.dir)
        self.profile = load_profile(self.lay.dir).profile
        for proc in self.procs:  # today's binaries and chaincode command
            if proc.role == "chaincode":
                proc.argv = list(self.command)
            else:
                proc.argv[0] = self.bins.program(Path(proc.argv[0]).name)
            procs.start(proc)
            procs.save(self.lay.dir, self.procs)
        self._wait_started()
        self._at("electing a Raft leader")
        self._wait_leader()
        self._ready()

    def _ready(self) -> None:
        names = ", ".join(self.codes)
        self._at(f"waiting for a ping endorsed by {names} to commit")
        self._ping()
        self._at("checking that every peer has the same block height")
        self._same_heights()

    # ---- material and configuration ---------------------------------------------------

    def _crypto(self) -> None:
        from network import msp

        members = {f"orderer{i}": "orderer" for i in range(self.count)}
        self.orderer_org = msp.generate_org(self.lay.crypto / "orderer", "orderer",
                                            nodes.ORDERER_MSP, {**members, "admin": "admin"})
        for cc in self.codes:
            self.orgs[cc] = msp.generate_org(
                self.lay.crypto / cc, cc, wire.msp_id(cc),
                {"peer": "peer", "admin": "admin", "client": "client"}, country=cc)
        bad = msp.first_bad_certificate(self.lay.crypto)
        if bad is not None:
            raise StepFailed("checking the generated certificates", None, str(bad))

    def _config(self) -> None:
        self.lay.config.mkdir(parents=True, exist_ok=True)
        core = (self.bins.sampleconfig / "core.yaml").read_text()
        docker = "endpoint: unix:///var/run/docker.sock"
        if docker not in core:
            raise StepFailed("writing core.yaml", None, f"{docker!r} not found in "
                             f"{self.bins.sampleconfig / 'core.yaml'}")
        (self.lay.config / "core.yaml").write_text(core.replace(docker, 'endpoint: ""', 1))
        shutil.copyfile(self.bins.sampleconfig / "orderer.yaml",
                        self.lay.config / "orderer.yaml")
        package.install_builder(self.lay.builder)
        self.ports = self._allocate_ports()
        assert self.orderer_org is not None  # noqa: S101
        orderers = [configtx.OrdererNode(
            nodes.HOST, self.ports[f"orderer{i}"]["listen"],
            self.orderer_org.identities[f"orderer{i}"].tls_cert) for i in range(self.count)]
        peers = [configtx.PeerOrg(self.orgs[cc], nodes.HOST, self.ports[f"peer-{cc}"]["listen"])
                 for cc in self.codes]
        configtx.write(self.lay.config / "configtx.yaml", self.orderer_org, orderers, peers)

    def _allocate_ports(self) -> dict[str, dict[str, int]]:
        shape = {f"orderer{i}": ("listen", "admin", "operations") for i in range(self.count)}
        for cc in self.codes:
            shape[f"peer-{cc}"] = ("listen", "chaincode_listen", "operations")
            shape[f"chaincode-{cc}"] = ("listen",)
        free = iter(fabcli.free_ports(sum(len(v) for v in shape.values())))
        return {name: {kind: next(free) for kind in kinds} for name, kinds in shape.items()}

    def _genesis(self) -> None:
        fabcli.run([self.bins.program("configtxgen"), "-profile", configtx.PROFILE,
                    "-outputBlock", str(self.lay.block), "-channelID", wire.CHANNEL,
                    "-configPath", str(self.lay.config)],
                   {"FABRIC_CFG_PATH": str(self.lay.config)}, self.lay.log("configtxgen"),
                   self.step)

    # ---- processes --------------------------------------------------------------------

    def _start_all(self) -> None:
        assert self.orderer_org is not None  # noqa: S101
        for i in range(self.count):
            name = f"orderer{i}"
            env = nodes.orderer_env(self.lay, i, self.orderer_org.identities[name],
                                    self.orderer_org.tls_ca, self.ports[name])
            self._spawn(Proc(name, "orderer", None, i, [self.bins.program("orderer")], env,
                             str(self.lay.orderer(i)), str(self.lay.log(name)),
                             addr(self.ports[name]["listen"]), self.ports[name]))
        for cc in self.codes:
            self._spawn_peer(cc)
        self._wait_started()

    def _spawn_peer(self, cc: str) -> None:
        org, name, cc_name = self.orgs[cc], f"peer-{cc}", f"chaincode-{cc}"
        self.lay.node_dir(cc).mkdir(parents=True, exist_ok=True)
        self._spawn(Proc(name, "peer", cc, None, [self.bins.program("peer"), "node", "start"],
                         nodes.peer_env(self.lay, org, self.ports[name]),
                         str(self.lay.org(cc)), str(self.lay.log(name)),
                         addr(self.ports[name]["listen"]), self.ports[name]))
        address = addr(self.ports[cc_name]["listen"])
        self.package_ids[cc] = package.build(self.lay.package(cc), f"custody-{cc}", address)
        self._spawn(Proc(cc_name, "chaincode", cc, None, list(self.command),
                         nodes.chaincode_env(address, self.package_ids[cc]),
                         str(self.lay.org(cc)), str(self.lay.log(cc_name)), address,
                         self.ports[cc_name]))

    def _spawn(self, proc: Proc) -> None:
        Path(proc.cwd).mkdir(parents=True, exist_ok=True)
        self.procs.append(proc)
        try:
            procs.start(proc)
        except OSError as exc:
            self.procs.pop()
            raise StepFailed(f"starting {proc.name}", Path(proc.log), str(exc)) from None
        finally:
            procs.save(self.lay.dir, self.procs)

    def _wait_started(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        for proc in self.procs:
            ports = [proc.ports["listen"]] + ([proc.ports["admin"]] if "admin" in proc.ports
                                              else [])
            fabcli.wait_listening(proc, ports, deadline)

    # ---- channel ----------------------------------------------------------------------

    def _join_orderers(self) -> None:
        assert self.orderer_org is not None  # noqa: S101
        admin = self.orderer_org.identities["admin"]
        for proc in self._orderers():
            self._at(f"joining {proc.name} to channel {wire.CHANNEL}")
            out = fabcli.run([self.bins.program("osnadmin"), "channel", "join",
                              "--channelID", wire.CHANNEL, "--config-block",
                              str(self.lay.block), "-o", addr(proc.ports["admin"]),
                              "--ca-file", str(self.orderer_org.tls_ca), "--client-cert",
                              str(admin.tls_cert), "--client-key", str(admin.tls_key)],
                             {}, self.lay.log(f"osnadmin-{proc.name}"), self.step)
            if "Status: 201" not in out:
                raise StepFailed(self.step, self.lay.log(f"osnadmin-{proc.name}"),
                                 fabcli.last_line(out))

    def _orderers(self) -> list[Proc]:
        return [p for p in self.procs if p.role == "orderer"]

    def _wait_leader(self) -> None:
        from network.control import leader_of

        deadline = time.monotonic() + READY_TIMEOUT
        while leader_of(self.procs) is None:
            for proc in self._orderers():
                if not procs.alive(proc):
                    raise StepFailed(self.step, Path(proc.log), f"{proc.name} exited")
            if time.monotonic() > deadline:
                raise StepFailed(self.step, self.lay.log("orderer0"),
                                 f"no leader after {READY_TIMEOUT:.0f} s")
            time.sleep(0.2)

    def _admin_env(self, cc: str) -> dict[str, str]:
        org = self.orgs[cc]
        return nodes.admin_env(self.lay, org.msp_id, org.identities["admin"].msp_dir,
                               addr(self.ports[f"peer-{cc}"]["listen"]), org.tls_ca)

    def _peer(self, *args: str) -> list[str]:
        return [self.bins.program("peer"), *args]

    def _join_peers(self) -> None:
        fabcli.run_all([(self._peer("channel", "join", "-b", str(self.lay.block)),
                         self._admin_env(cc), self.lay.log(f"join-{cc}"),
                         f"joining peer {cc} to channel {wire.CHANNEL}")
                        for cc in self.codes])

    # ---- chaincode lifecycle ----------------------------------------------------------

    def _orderer_args(self) -> list[str]:
        assert self.orderer_org is not None  # noqa: S101
        return ["-o", addr(self.ports["orderer0"]["listen"]), "--tls", "--cafile",
                str(self.orderer_org.tls_ca)]

    def _definition_args(self) -> list[str]:
        policy = "OR(" + ",".join(f"'{self.orgs[cc].msp_id}.peer'" for cc in self.codes) + ")"
        return ["--channelID", wire.CHANNEL, "--name", wire.CHAINCODE, "--version",
                CHAINCODE_VERSION, "--sequence", SEQUENCE, "--signature-policy", policy]

    def _all_peers_args(self) -> list[str]:
        args = []
        for cc in self.codes:
            args += ["--peerAddresses", addr(self.ports[f"peer-{cc}"]["listen"]),
                     "--tlsRootCertFiles", str(self.orgs[cc].tls_ca)]
        return args

    def _install(self) -> None:
        jobs = [(self._peer("lifecycle", "chaincode", "install", str(self.lay.package(cc))),
                 {**self._admin_env(cc), "FABRIC_LOGGING_SPEC": "info"},
                 self.lay.log(f"install-{cc}"), f"installing the chaincode on peer {cc}")
                for cc in self.codes]
        fabcli.run_all(jobs)
        for cc in self.codes:  # the peer computed the same package id as we did
            log = self.lay.log(f"install-{cc}")
            if self.package_ids[cc] not in log.read_text():
                raise StepFailed(f"installing the chaincode on peer {cc}", log,
                                 f"the peer did not report package id {self.package_ids[cc]}")

    def _approve(self) -> None:
        fabcli.run_all([(self._peer("lifecycle", "chaincode", "approveformyorg",
                                    *self._orderer_args(), *self._definition_args(),
                                    "--package-id", self.package_ids[cc], "--waitForEvent"),
                         self._admin_env(cc), self.lay.log(f"approve-{cc}"),
                         f"approving the chaincode for {cc}") for cc in self.codes])

    def _commit(self) -> None:
        cc = self.codes[0]
        fabcli.run(self._peer("lifecycle", "chaincode", "commit", *self._orderer_args(),
                              *self._definition_args(), *self._all_peers_args(),
                              "--waitForEvent"),
                   self._admin_env(cc), self.lay.log("commit"), self.step)

    def _ping(self) -> None:
        from network.control import ping

        deadline = time.monotonic() + self.ping_timeout
        while True:
            try:
                ping(self.lay.dir, self.profile, self.procs)
                return
            except StepFailed as exc:
                for proc in self.procs:
                    if not procs.alive(proc):
                        raise StepFailed(self.step, Path(proc.log),
                                         f"{proc.name} exited") from None
                if time.monotonic() > deadline:
                    raise StepFailed(self.step, exc.log, exc.reason) from None
            time.sleep(2.0)

    def _same_heights(self) -> None:
        from network.control import heights

        deadline = time.monotonic() + 60.0
        while True:
            seen = heights(self.lay.dir, self.profile, self.procs)
            if len(set(seen.values())) == 1 and None not in seen.values():
                return
            if time.monotonic() > deadline:
                raise StepFailed(self.step, self.lay.log("getinfo"),
                                 "heights differ: " + json.dumps(seen))
            time.sleep(0.5)

    # ---- the profile ------------------------------------------------------------------

    def _profile(self) -> dict[str, Any]:
        assert self.orderer_org is not None  # noqa: S101
        orgs = {}
        for cc in self.codes:
            org = self.orgs[cc]
            client, admin = org.identities["client"], org.identities["admin"]
            orgs[cc] = {
                "msp_id": org.msp_id,
                "peer": {"address": addr(self.ports[f"peer-{cc}"]["listen"]),
                         "tls_ca": str(org.tls_ca), "server_name": nodes.HOST},
                "client": {"cert": str(client.cert), "key": str(client.key)},
                "admin": {"cert": str(admin.cert), "key": str(admin.key),
                          "msp_dir": str(admin.msp_dir)},
                "chaincode": {"address": addr(self.ports[f"chaincode-{cc}"]["listen"]),
                              "package_id": self.package_ids[cc]},
                "node_dir": str(self.lay.node_dir(cc)),
            }
        orderers = [{"address": addr(self.ports[f"orderer{i}"]["listen"]),
                     "admin_address": addr(self.ports[f"orderer{i}"]["admin"]),
                     "tls_ca": str(self.orderer_org.tls_ca)} for i in range(self.count)]
        return {"version": 1, "fabric": binaries.VERSION, "channel": wire.CHANNEL,
                "chaincode": wire.CHAINCODE, "origin": self.origin, "orgs": orgs,
                "orderers": orderers}

    def _write_profile(self) -> None:
        """network.json, written last: its presence means the network came up."""
        tmp = self.lay.profile.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.profile, indent=2) + "\n")
        tmp.replace(self.lay.profile)
