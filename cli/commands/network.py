"""``custody network up|status|down``: a real Hyperledger Fabric network on this machine.

``up`` builds Fabric's binaries once (needs Go; cached), then brings up one peer and
one chaincode service per organisation and 3 (or 1) Raft orderers on 127.0.0.1, all in
``--dir``, and returns once a ping endorsed by every organisation has committed. It is
all or nothing: on a failure or Ctrl-C every process it started is stopped and one
sentence names the step and the log to read (exit 5; 130 for Ctrl-C).
"""

from __future__ import annotations

import base64
import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from cli import context
from cli.options import Json
from ledger.core.errors import InvalidInput, NotFound

app = typer.Typer(help="Run a Hyperledger Fabric network of the consortium on this "
                  "machine: one peer per organisation (ISO country code), Raft orderers, "
                  "the custody chaincode.", no_args_is_help=True)

#: The default origin (network.launch.DEFAULT_ORIGIN; the network package is imported only
#: by these commands, so that the rest of the CLI does not load it).
DEFAULT_ORIGIN = "custody.consortium"

Dir = Annotated[Path, typer.Option("--dir", metavar="DIR", help="The network's directory "
                                   "(certificates, data, logs, network.json).")]


def _say(message: str) -> None:
    context.err_console.print(message, highlight=False, markup=False, style="dim")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """During ``up``, SIGTERM stops the network like Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> NoReturn:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command()
def up(
    ctx: typer.Context,
    orgs: Annotated[str, typer.Option(help="The organisations, as ISO 3166-1 alpha-2 "
                                      "country codes separated by commas, e.g. DE,NL,FR.")],
    dir_: Dir,
    orderers: Annotated[int, typer.Option(help="Raft orderers: 3 (survives one down) or "
                                          "1.")] = 3,
    origin: Annotated[str | None, typer.Option(
        help=f"The ledger's origin (log name) recorded in network.json (default: "
        f"{DEFAULT_ORIGIN}).")] = None,
    json_: Json = False,
) -> None:
    """Bring a network up in DIR (new or empty; a stopped network there is started
    again) and write DIR/network.json, the connection profile. The first run builds the
    Fabric binaries with Go (about 70-140 s) into ~/.cache/custody-ledger/fabric
    ($CUSTODY_FABRIC_CACHE)."""
    import network

    started = time.monotonic()
    try:
        with _sigterm_interrupts():
            prof = network.up(orgs, dir_, orderers=orderers, origin=origin, progress=_say)
    except ModuleNotFoundError as exc:
        raise InvalidInput(f"{exc.name} is not installed, and a Fabric network needs it: "
                           "pip install 'custody-ledger[fabric]'") from None
    except network.Interrupted as exc:
        context.err_console.print(f"custody: {exc.sentence}", highlight=False, markup=False)
        raise typer.Exit(130) from None
    seconds = round(time.monotonic() - started, 1)
    codes = prof.orgs
    if context.want_json(ctx, json_):
        context.emit_json({"dir": str(prof.dir), "profile": str(prof.path), "orgs": codes,
                           "orderers": len(prof.profile["orderers"]),
                           "channel": prof.profile["channel"],
                           "chaincode": prof.profile["chaincode"], "seconds": seconds})
        return
    from network.launch import plural

    msps = ", ".join(prof.profile["orgs"][cc]["msp_id"] for cc in codes)
    context.console.print(
        f"Network up in {prof.dir}: {plural(len(codes), 'organisation')} ({msps}), "
        f"{plural(len(prof.profile['orderers']), 'Raft orderer')}, "
        f"channel {prof.profile['channel']}, "
        f"chaincode {prof.profile['chaincode']} ({seconds} s)", highlight=False)
    context.console.print(f"  connection profile: {prof.path}", highlight=False)
    context.console.print(f"  stop it with: custody network down --dir {prof.dir}",
                          highlight=False)


@app.command()
def status(ctx: typer.Context, dir_: Dir, json_: Json = False) -> None:
    """Each process of the network (role, organisation, pid, alive, address) and each
    peer's block height on the channel."""
    import network

    info = network.status(dir_)
    if context.want_json(ctx, json_):
        context.emit_json(info)
        return
    from rich.table import Table

    heights = info["heights"]
    table = Table("process", "role", "org", "pid", "alive", "address", "height")
    for p in info["processes"]:
        height = heights.get(p["org"]) if p["role"] == "peer" else None
        table.add_row(p["name"], p["role"], p["org"] or "", str(p["pid"]),
                      "yes" if p["alive"] else "no", p["address"],
                      "" if height is None else str(height))
    context.console.print(table)
    alive = sum(p["alive"] for p in info["processes"])
    context.console.print(f"{alive} of {len(info['processes'])} processes running in "
                          f"{info['dir']}", highlight=False)


@app.command()
def down(
    ctx: typer.Context,
    dir_: Dir,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete DIR (certificates, "
                                        "ledgers, logs).")] = False,
    json_: Json = False,
) -> None:
    """Stop exactly the processes the network started (SIGTERM, then SIGKILL after a
    grace period) and check that none is left. Keeps the data unless --purge. Running
    it again says that nothing is running."""
    import network
    from network.launch import plural

    result = network.down(dir_, purge=purge)
    if context.want_json(ctx, json_):
        context.emit_json(result)
        return
    stopped = len(result["stopped"])
    kept = "removed" if result["purged"] else "kept"
    what = f"Stopped {plural(stopped, 'process')}" if stopped else "Nothing is running"
    context.console.print(f"{what} in {result['dir']} (data {kept})", highlight=False)


@app.command()
def keys(
    ctx: typer.Context,
    dir_: Dir,
    org: Annotated[str | None, typer.Option(metavar="CC", help="Only this organisation "
                                            "(country code).")] = None,
    kind: Annotated[str | None, typer.Option(metavar="log|witness", help="Only this key, "
                                             "printed alone (for scripts).")] = None,
    json_: Json = False,
) -> None:
    """Each organisation node's log key (signs its checkpoints; pin it to verify that
    organisation's log) and witness key (cosigns the other organisations' checkpoints;
    pass it to --witness). A node's keys are made when it first follows the chain."""
    if kind not in (None, "log", "witness"):
        raise InvalidInput(f"--kind {kind!r}: use log or witness")
    from ledger import keys as keyfiles
    from ledger.core.checkpoint import cosignature_verifier_key
    from ledger.core.note import verifier_key
    from ledger.fabric.store import load_profile

    profile = load_profile(dir_)
    rows: dict[str, dict[str, str | None]] = {}
    for name_, info in sorted(profile["orgs"].items()):
        node = Path(info["node_dir"])
        row: dict[str, str | None] = {"log_key": None, "witness_key": None}
        for name, path, make in (("log_key", node / "log.key", verifier_key),
                                 ("witness_key", node / "witness.key",
                                  cosignature_verifier_key)):
            if path.is_file():
                doc = keyfiles.key_info(path)
                row[name] = make(str(doc["name"]), base64.b64decode(str(doc["public_key"])))
        rows[name_] = row
    if org is not None:
        if org.upper() not in rows:
            raise InvalidInput(f"the network in {dir_} has no organisation {org!r}; it has: "
                               + ", ".join(rows))
        rows = {org.upper(): rows[org.upper()]}
    if kind is not None:
        if org is None:
            raise InvalidInput("--kind needs --org (one key is printed)")
        key = rows[org.upper()][f"{kind}_key"]
        if key is None:
            raise NotFound(f"{org.upper()}'s node has no {kind} key yet: it is made when the "
                           "node first follows the chain (any command on this network)")
        typer.echo(key)
        return
    if context.want_json(ctx, json_):
        context.emit_json({"origin": profile["origin"], "orgs": rows})
        return
    for name_, row in rows.items():
        context.console.print(f"{name_} log key:     {row['log_key'] or '(not made yet)'}",
                              highlight=False)
        context.console.print(f"{name_} witness key: {row['witness_key'] or '(not made yet)'}",
                              highlight=False)
