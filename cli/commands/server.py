"""Server mode: ``custody serve`` (run the API over a home's ledger) and ``custody join``
(make a client home for a server, with a key created on this machine)."""

from __future__ import annotations

import base64
import errno
import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli import context
from cli.commands.setup import new_passphrase
from cli.options import Json
from ledger.core.errors import InvalidInput


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
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", metavar="FILE", help="TLS certificate chain (PEM); with --tls-key the "
        "server speaks TLS 1.2+ only (env CUSTODY_TLS_CERT).")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        "--tls-key", metavar="FILE", help="TLS private key (PEM); refused when group- or "
        "world-readable (env CUSTODY_TLS_KEY).")] = None,
    client_ca: Annotated[Path | None, typer.Option(
        "--client-ca", metavar="FILE", help="Mutual TLS: every client must present a "
        "certificate from this CA whose organisation (O) is the organisation of the actor "
        "logging in; needs --security-actor (env CUSTODY_TLS_CLIENT_CA).")] = None,
    security_actor: Annotated[str | None, typer.Option(
        "--security-actor", metavar="ID", help="With --client-ca: the actor (role auditor or "
        "admin, key in this home) whose key signs the log entry recording a refused "
        "login.")] = None,
    workers: Annotated[int, typer.Option(
        min=1, max=64, help="Worker processes sharing the port (SQLite or PostgreSQL "
        "ledgers; the database serialises their writes). Rate limits and login throttling "
        "are per process.")] = 1,
    json_: Json = False,
) -> None:
    """Serve this home's ledger over the REST API (OpenAPI at /openapi.json, docs at /docs).
    Clients sign events with their own keys; the server holds only the log key. A port
    already in use is invalid usage (exit 2): choose another --port. With --production,
    listening on anything but a loopback address needs --tls-cert and --tls-key."""
    from api.server import check_exposure, startup_line, tls_files
    from api.server import serve as run_server
    from api.server import url as server_url
    from api.settings import Settings
    from api.tls import server_context
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
    for name, option, given in (("tls_cert", "--tls-cert", tls_cert),
                                ("tls_key", "--tls-key", tls_key),
                                ("tls_client_ca", "--client-ca", client_ca)):
        if given is not None:
            values[name] = _readable(given, option)
    if security_actor:
        key_path = home.actor_key_path(security_actor)
        if not key_path.is_file():
            raise InvalidInput(f"no key for the security actor {security_actor} in this home "
                               f"({key_path})")
        values |= {"security_actor": security_actor, "security_actor_key": key_path}
    try:
        settings = Settings(**values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InvalidInput(settings_error(exc)) from None
    check_exposure(host, settings)
    files = tls_files(settings)
    if files is not None:
        server_context(files)  # a readable key or a bad pair: one sentence before binding
    check_port_free(host, port)
    backend = "fabric" if settings.fabric_network else settings.database_url.split(":", 1)[0]
    if context.want_json(ctx, json_):
        context.emit_json({"origin": home.origin, "url": server_url(host, port, settings),
                           "database": backend, "tls": files is not None,
                           "mutual_tls": settings.tls_client_ca is not None,
                           "workers": workers})
        sys.stdout.flush()
    else:
        context.err_console.print(f"{startup_line(host, port, settings)} ({backend}"
                                  f"{f', {workers} workers' if workers > 1 else ''})",
                                  markup=False, highlight=False)
    try:
        run_server(host, port, settings, workers=workers)
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind (a race with the check)
        if exc.code not in (None, 0):
            raise InvalidInput(f"could not listen on {host}:{port} (in use, or not an "
                               "address of this machine); choose another --port or --host") \
                from None
        raise


def settings_error(exc: ValueError) -> str:
    """One sentence from a settings validation error (pydantic's first message)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        msg = str(first.get("msg", "")).removeprefix("Value error, ")
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"invalid server settings: {msg}" + (f" ({where})" if where else "")
    return f"invalid server settings: {exc}"


def _readable(path: Path, option: str) -> Path:
    """An existing, readable file given on the command line (one sentence otherwise)."""
    path = path.expanduser().resolve()
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise InvalidInput(f"cannot read {option} {path}: {exc.strerror or exc}") from None
    return path


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
    ca: Annotated[Path | None, typer.Option(
        "--ca", metavar="FILE", help="CA certificate(s) (PEM) the server's certificate must "
        "chain to, instead of the system store; copied into this home and used from then "
        "on.")] = None,
    client_cert: Annotated[Path | None, typer.Option(
        "--client-cert", metavar="FILE", help="Your agency's client certificate chain (PEM) "
        "for a server that requires mutual TLS; copied into this home.")] = None,
    client_key: Annotated[Path | None, typer.Option(
        "--client-key", metavar="FILE", help="Its private key (PEM, not group- or "
        "world-readable); copied into this home with mode 0600.")] = None,
    json_: Json = False,
) -> None:
    """Prepare this home as a client of a server: create your Ed25519 key HERE (it never
    leaves this machine) and print the public key for an admin to enrol with
    'custody actor enrol … --public-key KEY'. For an https server with a private CA give
    --ca; for mutual TLS give --client-cert and --client-key. They are pinned in this home
    and used by every later command; there is never a fallback to plain HTTP."""
    from ledger import keys
    from ledger.core import _sodium
    from ledger.core.events import check_id
    from ledger.store.remote import ClientTls, RemoteStore

    c = context.get(ctx)
    home = c.home
    check_id(actor_id, "actor id")
    given = client_tls_files(ca, client_cert, client_key)
    if home.exists:
        home.load()
        if home.config.get("server") != server:
            raise InvalidInput(f"{home.path} already holds a ledger or another server's "
                               "configuration; choose another --home")
        if any(given.values()):
            raise InvalidInput(f"{home.path} already joined {server}; its TLS files are "
                               f"pinned there (replace them under {home.path / 'tls'})")
    else:
        probe = RemoteStore(server, token=None, tls=ClientTls(
            given["ca"], given["cert"], given["key"]) if any(given.values()) else None)
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
    passphrase = new_passphrase(no_passphrase, f"actor {actor_id}")
    if any(given.values()):
        home.config["tls"] = pin_tls_files(home.path, given)
    seed = os.urandom(32)
    keys.write_key(path, actor_id, seed, passphrase)
    home.save()
    public_key = base64.b64encode(_sodium.public_key_from_seed(seed)).decode()
    out = {"home": str(home.path), "server": server, "origin": home.origin,
           "actor": actor_id, "public_key": public_key,
           "verifier_key": home.config["log_key"],
           "tls": {k: str(home.path / v) for k, v in home.config.get("tls", {}).items()}}
    if context.want_json(ctx, json_):
        context.emit_json(out)
        return
    context.console.print(f"Key for {actor_id} created in {path}")
    context.console.print(f"Pinned the log's verifier key {home.config['log_key']}; compare "
                          "it with the operator's out of band")
    context.console.print(f"Ask an admin to enrol it:\n  custody actor enrol --id {actor_id} "
                          f"--org ORG --name NAME --role ROLE --public-key {public_key}")


_TLS_NAMES = {"ca": "ca.pem", "cert": "client-cert.pem", "key": "client-key.pem"}


def client_tls_files(ca: Path | None, cert: Path | None, key: Path | None
                     ) -> dict[str, Path | None]:
    """The client's TLS files as given to ``join``, checked: readable, a certificate and
    its key together, the key not readable by others (one sentence, exit 2)."""
    if (cert is None) != (key is None):
        raise InvalidInput("--client-cert and --client-key go together")
    given = {"ca": ca, "cert": cert, "key": key}
    for name, path in list(given.items()):
        if path is None:
            continue
        option = {"ca": "--ca", "cert": "--client-cert", "key": "--client-key"}[name]
        path = given[name] = _readable(path, option)
        if name == "key" and path.stat().st_mode & 0o077:
            raise InvalidInput(f"the client key {path} is readable by other users; "
                               f"run: chmod 600 {path}")
    return given


def pin_tls_files(home_path: Path, given: dict[str, Path | None]) -> dict[str, str]:
    """Copy the given TLS files into ``HOME/tls/`` (the key 0600) and return the home
    config's ``tls`` member (paths relative to the home)."""
    folder = home_path / "tls"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    pinned: dict[str, str] = {}
    for name, source in given.items():
        if source is None:
            continue
        target = folder / _TLS_NAMES[name]
        tmp = target.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600 if name == "key" else 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(source.read_bytes())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
        pinned[name] = f"tls/{_TLS_NAMES[name]}"
    return pinned
