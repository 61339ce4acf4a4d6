"""``custody init``: a new embedded ledger, log key, first organisation and admin, and
the organisation's encryption key (age X25519) for sealed evidence packages."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli import context
from cli.options import Json
from ledger.core.errors import InvalidInput, LedgerError
from ledger.core.vocab import COUNTRIES, ROLES
from ledger.home import Home, custody, open_store, passphrase_from_env

if TYPE_CHECKING:  # imported where used: other commands import this module's helpers
    from ledger.service import ActorKey, Custody
    from ledger.store.base import AppendResult


def slug(name: str) -> str:
    value = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48]
    if not value:
        raise InvalidInput(f"cannot derive an id from {name!r}; pass an explicit id")
    return value


def new_passphrase(no_passphrase: bool, what: str) -> bytes | None:
    """The passphrase for a new key: none (explicitly), the environment, or a prompt."""
    if no_passphrase:
        return None
    env = passphrase_from_env()
    if env is not None:
        if not env:
            raise InvalidInput("CUSTODY_PASSPHRASE is set but empty (an empty passphrase is not "
                               "allowed); set a passphrase or pass "
                               "--no-passphrase")
        return env
    if not os.isatty(0):
        raise InvalidInput("keys are encrypted with a passphrase: set CUSTODY_PASSPHRASE, "
                           "or pass --no-passphrase to store them unencrypted")
    first = typer.prompt(f"New passphrase for {what}", hide_input=True)
    if typer.prompt("Repeat the passphrase", hide_input=True) != first:
        raise InvalidInput("the two passphrases differ")
    if not first:
        raise InvalidInput("an empty passphrase is not allowed; use --no-passphrase")
    return str(first).encode()


def org_key_passphrase(home: Home, admin_id: str, no_passphrase: bool, org: str) -> bytes | None:
    """The passphrase for a new organisation encryption key made by ``admin_id``: none
    with --no-passphrase; ``CUSTODY_PASSPHRASE`` when set; none when the admin's own key
    is stored unencrypted (the home was made with --no-passphrase); else asked."""
    from ledger import keys

    if no_passphrase:
        return None
    admin_key = home.actor_key_path(admin_id)
    if passphrase_from_env() is None and admin_key.exists() and not keys.is_encrypted(admin_key):
        return None
    return new_passphrase(False, f"organisation {org}'s encryption key")


def new_age_identity() -> tuple[str, str]:
    """A new age X25519 identity and its recipient: (``AGE-SECRET-KEY-1…``, ``age1…``)."""
    import pyrage  # type: ignore[import-untyped]  # no stubs (see ledger/seal.py)

    identity = pyrage.x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def create_org_key(home: Home, service: Custody, admin: ActorKey, org: str,
                   passphrase: bytes | None) -> tuple[AppendResult, str, Path]:
    """Create a new encryption key for ``org`` in ``home``, enrol it on the ledger
    (signed by ``admin``) and make it the org's current key file. Returns the receipt,
    the new key id and its file.

    The identity is written first as ``ORG.KEYID.key`` and removed if the enrolment is
    refused; once enrolled, the previous current file is kept as ``ORG.OLDKEYID.key``
    (packages sealed to it can still be opened) and the new one becomes ``ORG.key``."""
    from ledger import keys
    from ledger.core.events import org_key_id

    identity, recipient = new_age_identity()
    key_id = org_key_id(recipient)
    pending = home.retired_org_key_path(org, key_id)
    keys.write_identity(pending, org, identity, passphrase)
    try:
        receipt = service.enrol_org_key(admin, org, recipient)
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    current = home.org_key_path(org)
    if current.exists():
        try:
            old_id = org_key_id(str(keys.identity_info(current)["recipient"]))
        except LedgerError:  # not an identity file of ours: keep it aside, never lose it
            old_id = "unreadable"
        os.replace(current, home.retired_org_key_path(org, old_id))
    os.replace(pending, current)
    return receipt, key_id, current


def check_country(code: str) -> str:
    if code not in COUNTRIES:
        raise InvalidInput(f"{code!r} is not an ISO 3166-1 alpha-2 country code "
                           "(e.g. DE, NL, FR, US)")
    return code


def admin_role_list(value: str) -> list[str]:
    """``admin,examiner`` -> ["admin", "examiner"]; every role known, admin included."""
    roles = list(dict.fromkeys(r.strip() for r in value.split(",") if r.strip()))
    for role in roles:
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}; use one of: " + ", ".join(ROLES))
    if "admin" not in roles:
        raise InvalidInput("--admin-roles must include admin (the first actor enrols the "
                           "others)")
    return roles


def init(
    ctx: typer.Context,
    org_name: Annotated[str, typer.Option(help="Name of the first organisation (agency).")],
    jurisdiction: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2 country code.")],
    origin: Annotated[str | None, typer.Option(
        help="The log's origin line, e.g. 'bka.example/custody'. Unique per ledger. "
        "Required, except on a Fabric network (--network), whose origin is used.")] = None,
    org_id: Annotated[str | None, typer.Option(help="Organisation id (default: from the "
                                               "name).")] = None,
    admin_name: Annotated[str, typer.Option(help="Display name of the admin.")] = "Administrator",
    admin_id: Annotated[str | None, typer.Option(help="Admin actor id (default: "
                                                 "ORG-admin).")] = None,
    database: Annotated[str | None, typer.Option(help="Database URL (default: SQLite in "
                                                 "the home).")] = None,
    no_passphrase: Annotated[bool, typer.Option("--no-passphrase", help="Store keys "
                                                "unencrypted (0600 only).")] = False,
    admin_roles: Annotated[str, typer.Option(
        metavar="ROLES", help="Roles of the admin actor, comma-separated; must include "
        "admin. The default also lets the admin register evidence as an examiner; pass "
        "--admin-roles admin for an admin who never handles evidence.")] = "admin,examiner",
    network: Annotated[Path | None, typer.Option(
        help="Create the ledger on this Fabric network (the directory of 'custody network "
        "up'): the home then uses it for every command, as the organisation of "
        "--jurisdiction.")] = None,
    json_: Json = False,
) -> None:
    """Create a new ledger: log key, first organisation, and an admin actor with the roles
    of --admin-roles (by default admin and examiner; printed), then the organisation's
    encryption key for sealed packages, enrolled right after the genesis (its key id is
    printed). Keys are written under the home with mode 0600. With --network, the ledger
    lives on that Fabric network and the log key is the organisation node's."""
    from ledger import keys
    from ledger.core import _sodium
    from ledger.core.events import org_key_id
    from ledger.core.note import check_name, verifier_key
    from ledger.service import ActorKey

    c = context.get(ctx)
    if network is not None:
        c.network = network.resolve()
    home: Home = c.home
    if home.exists:
        raise InvalidInput(f"{home.path} already holds a ledger; choose another --home")
    jurisdiction = jurisdiction.upper()  # "de" is DE: the signed genesis keeps upper case
    check_country(jurisdiction)
    fabric: dict[str, str] = {}
    if c.network is not None:
        origin = _fabric_origin(c.network, origin, jurisdiction)
        fabric = {"network": str(c.network), "fabric_org": jurisdiction}
    if origin is None:
        raise InvalidInput("--origin is required (the log's name, e.g. 'bka.example/custody')")
    check_name(origin)
    roles = admin_role_list(admin_roles)
    oid = org_id or slug(org_name)
    aid = admin_id or f"{oid}-admin"
    passphrase = new_passphrase(no_passphrase, "the new keys")
    created = not home.path.exists()
    try:
        home.config = {"v": 1, "origin": origin, "default_actor": aid, **fabric}
        if database:
            home.config["database"] = database
        log_seed, admin_seed = os.urandom(32), os.urandom(32)
        if not fabric:  # on Fabric, each organisation's node holds its own log key
            keys.write_key(home.log_key_path, origin, log_seed, passphrase)
        keys.write_key(home.actor_key_path(aid), aid, admin_seed, passphrase)
        org_identity, org_recipient = new_age_identity()
        keys.write_identity(home.org_key_path(oid), oid, org_identity, passphrase)
        del org_identity
        home.save()
        store = open_store(home, create=True)
        try:
            admin = ActorKey(aid, _sodium.Signer(admin_seed))
            if fabric:  # the Fabric store (and its gRPC stack) only for a Fabric home
                from ledger.fabric.store import FabricStore

                assert isinstance(store, FabricStore)  # noqa: S101
                vkey = store.log_key
            else:
                vkey = verifier_key(origin, _sodium.public_key_from_seed(log_seed))
            home.config["log_key"] = vkey  # pinned: verify and audit check against it
            home.save()
            service = custody(home, store)
            receipt = service.genesis(
                admin, org_id=oid, org_name=org_name, jurisdiction=jurisdiction,
                actor_name=admin_name, roles=roles, log_key=vkey)
            # The first organisation's encryption key, enrolled right after the genesis.
            key_receipt = service.enrol_org_key(admin, oid, org_recipient)
            home.remember_checkpoint(key_receipt.checkpoint)
        finally:
            store.close()
    except (LedgerError, OSError):
        if created:
            shutil.rmtree(home.path, ignore_errors=True)
        else:
            for name in ("config.json", "keys", "ledger.db", "ledger.db-wal", "ledger.db-shm",
                         "checkpoints"):
                target = home.path / name
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)
        raise
    out = {"home": str(home.path), "origin": origin, "org": oid, "jurisdiction": jurisdiction,
           "admin": aid, "admin_roles": roles, "verifier_key": vkey, "log_index": receipt.index,
           "org_key_id": org_key_id(org_recipient), "org_key_file": str(home.org_key_path(oid)),
           "org_key_log_index": key_receipt.index,
           "encrypted_keys": passphrase is not None, "backend": "fabric" if fabric else "sqlite",
           **({"network": fabric["network"], "fabric_org": jurisdiction} if fabric else {})}
    if context.want_json(ctx, json_):
        context.emit_json(out)
        return
    context.console.print(f"Created ledger [bold]{origin}[/] in {home.path}")
    context.console.print(f"  organisation {oid} ({jurisdiction}), admin actor {aid} "
                          f"with roles {', '.join(roles)}", highlight=False)
    context.console.print(f"  encryption key of {oid}: {org_key_id(org_recipient)} "
                          f"(log index {key_receipt.index})", highlight=False)
    context.console.print(f"  log verifier key: {vkey}")


def _fabric_origin(network: Path, origin: str | None, jurisdiction: str) -> str:
    """The origin of a ledger on the Fabric network in ``network`` (the network's), after
    checking that the network has an organisation for ``jurisdiction``."""
    from ledger.fabric.store import load_profile

    profile = load_profile(network)
    if origin is not None and origin != profile["origin"]:
        raise InvalidInput(f"the network in {network} carries the ledger "
                           f"{profile['origin']!r}; leave out --origin or pass that one")
    if jurisdiction not in profile["orgs"]:
        raise InvalidInput(f"the network in {network} has no organisation for {jurisdiction}; "
                           "it has: " + ", ".join(sorted(profile["orgs"])))
    return str(profile["origin"])
