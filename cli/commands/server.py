"""Server mode: ``custody serve`` (run the API over a home's ledger) and ``custody join``
(make a client home for a server, with a key created on this machine)."""

from __future__ import annotations

import base64
import errno
import os
import socket
import sys
from typing import Annotated

import typer

from cli import context
from cli.commands.setup import new_passphrase
from cli.options import Json
from ledger.errors import InvalidInput


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8600,
    database: Annotated[str | None, typer.Option(help="Database URL (default: the home's "
                                                 "ledger).")] = None,
    evidence_dir: Annotated[str | None, typer.Option(help="Directory for uploaded evidence "
                                                     "(uploads are off without it).")] = None,
    production: Annotated[bool, typer.Option("--production", help="Refuse unsafe settings "
                                             "(needs CUSTODY_TOKEN_SECRET).")] = False,
    witness_key: Annotated[list[str] | None, typer.Option(
        "--witness-key", metavar="KEY", help="Accept cosignatures only from this witness "
        "(verifier key printed by 'custody witness init'); repeat for several. Without it "
        "any witness may post.")] = None,
    json_: Json = False,
) -> None:
    """Serve this home's ledger over the REST API (OpenAPI at /openapi.json, docs at /docs).
    Clients sign events with their own keys; the server holds only the log key. A port
    already in use is invalid usage (exit 2): choose another --port."""
    from api.server import serve as run_server
    from api.settings import Settings
    from ledger import keys

    home = context.get(ctx).loaded()
    if home.config.get("server"):
        raise InvalidInput("this home is a client of a server; serve an embedded home")
    values: dict[str, object] = {
        "origin": home.origin, "environment": "production" if production else "development"}
    if home.config.get("network"):  # consortium: this organisation's view of the network
        values |= {"fabric_network": home.config["network"],
                   "fabric_org": home.config.get("fabric_org")}
    else:
        values |= {"database_url": database or home.database_url,
                   "log_key_path": home.log_key_path}
        if os.environ.get("CUSTODY_PASSPHRASE") and keys.is_encrypted(home.log_key_path):
            values["log_key_passphrase"] = os.environ["CUSTODY_PASSPHRASE"]
    if evidence_dir:
        values["evidence_dir"] = evidence_dir
    if witness_key:
        values["witness_keys"] = list(witness_key)
    secret = os.environ.get("CUSTODY_TOKEN_SECRET")
    if secret:
        values["token_secret"] = secret
    try:
        settings = Settings(**values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InvalidInput(str(exc).splitlines()[-1] if str(exc) else "invalid settings") \
            from exc
    check_port_free(host, port)
    backend = "fabric" if settings.fabric_network else settings.database_url.split(":", 1)[0]
    if context.want_json(ctx, json_):
        context.emit_json({"origin": home.origin, "url": f"http://{host}:{port}",
                           "database": backend})
        sys.stdout.flush()
    else:
        context.err_console.print(f"Serving {home.origin} on http://{host}:{port} ({backend})")
    try:
        run_server(host, port, settings)
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind (a race with the check)
        if exc.code not in (None, 0):
            raise InvalidInput(f"could not listen on {host}:{port} (in use, or not an "
                               "address of this machine); choose another --port or --host") \
                from None
        raise


def check_port_free(host: str, port: int) -> None:
    """Refuse at once, in one sentence (exit 2), a port that is already in use."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {host!r}: {exc.strerror or exc}") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InvalidInput(f"port {port} on {host} is already in use; choose another "
                                   "--port") from None
            raise InvalidInput(f"cannot listen on {host}:{port}: "
                               f"{exc.strerror or exc}") from None


def join(
    ctx: typer.Context,
    server: Annotated[str, typer.Option(help="The ledger server's URL.")],
    actor_id: Annotated[str, typer.Option("--id", help="Your actor id (as the admin will "
                                          "enrol it).")],
    no_passphrase: Annotated[bool, typer.Option("--no-passphrase", help="Store the key "
                                                "unencrypted (0600 only).")] = False,
    json_: Json = False,
) -> None:
    """Prepare this home as a client of a server: create your Ed25519 key HERE (it never
    leaves this machine) and print the public key for an admin to enrol with
    'custody actor enrol … --public-key KEY'."""
    from ledger import _sodium, keys
    from ledger.events import check_id
    from ledger.store.remote import RemoteStore

    c = context.get(ctx)
    home = c.home
    check_id(actor_id, "actor id")
    if home.exists:
        home.load()
        if home.config.get("server") != server:
            raise InvalidInput(f"{home.path} already holds a ledger or another server's "
                               "configuration; choose another --home")
    else:
        probe = RemoteStore(server, token=None)
        try:
            info = probe.log_info()
        finally:
            probe.close()
        if not info.get("origin") or not info.get("verifier_key"):
            raise InvalidInput(f"the server at {server} has no ledger yet")
        # The verifier key is pinned here (trust on first use; compare it out of band).
        home.config = {"v": 1, "origin": info["origin"], "server": server,
                       "log_key": info["verifier_key"], "default_actor": actor_id}
    path = home.actor_key_path(actor_id)
    if path.exists():
        raise InvalidInput(f"a local key for {actor_id} already exists at {path}")
    seed = os.urandom(32)
    keys.write_key(path, actor_id, seed, new_passphrase(no_passphrase, f"actor {actor_id}"))
    home.save()
    public_key = base64.b64encode(_sodium.public_key_from_seed(seed)).decode()
    out = {"home": str(home.path), "server": server, "origin": home.origin,
           "actor": actor_id, "public_key": public_key,
           "verifier_key": home.config["log_key"]}
    if context.want_json(ctx, json_):
        context.emit_json(out)
        return
    context.console.print(f"Key for {actor_id} created in {path}")
    context.console.print(f"Pinned the log's verifier key {home.config['log_key']}; compare "
                          "it with the operator's out of band")
    context.console.print(f"Ask an admin to enrol it:\n  custody actor enrol --id {actor_id} "
                          f"--org ORG --name NAME --role ROLE --public-key {public_key}")
