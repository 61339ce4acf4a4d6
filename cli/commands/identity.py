"""``custody org …`` and ``custody actor …``: organisations (agencies) and people, and
``custody org key …``: an organisation's encryption keys (age X25519) for sealed packages."""

from __future__ import annotations

import base64
import os
from typing import Annotated

import typer

from cli import context
from cli.commands.setup import (
    check_country,
    create_org_key,
    new_passphrase,
    org_key_passphrase,
    slug,
)
from cli.options import As, Json
from ledger.core.errors import InvalidInput
from ledger.core.state import ACTOR, ORG
from ledger.core.vocab import ROLES

org_app = typer.Typer(help="Organisations: one agency in one jurisdiction.",
                      no_args_is_help=True)
actor_app = typer.Typer(help="Actors: people who sign events, with roles and keys.",
                        no_args_is_help=True)
key_app = typer.Typer(help="An organisation's encryption keys (age X25519): evidence "
                      "packages sent to it are sealed to its current key.",
                      no_args_is_help=True)
org_app.add_typer(key_app, name="key")

_NO_KEY_PASSPHRASE = typer.Option(
    "--no-passphrase", help="Store the new encryption key unencrypted (0600 only). Without "
    "it the key is encrypted with CUSTODY_PASSPHRASE (or a passphrase asked on a "
    "terminal), unless the admin's own key is stored unencrypted.")


@org_app.command("add")
def org_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="The agency's name.")],
    jurisdiction: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2 country code.")],
    org_id: Annotated[str | None, typer.Option("--id", help="Id (default: from the name).")]
    = None,
    no_passphrase: Annotated[bool, _NO_KEY_PASSPHRASE] = False,
    as_: As = None,
    json_: Json = False,
) -> None:
    """Register an organisation (admin only), then create its encryption key in this home
    (HOME/keys/orgs/ORG.key) and enrol it, signed by the same admin."""
    c = context.get(ctx)
    jurisdiction = check_country(jurisdiction.strip().upper())
    oid = org_id or slug(name)
    home = c.loaded()
    actor = c.actor(as_)
    path = home.org_key_path(oid)
    if path.exists():
        raise InvalidInput(f"an encryption key for {oid} already exists at {path}")
    passphrase = org_key_passphrase(home, actor.actor_id, no_passphrase, oid)
    service = c.custody()
    receipt = service.add_org(actor, oid, name, jurisdiction)
    key_receipt, key_id, path = create_org_key(home, service, actor, oid, passphrase)
    c.remember_receipt(key_receipt)
    context.done(ctx, json_, receipt, {"org": oid, "jurisdiction": jurisdiction,
                                       "org_key_id": key_id, "org_key_file": str(path),
                                       "org_key_log_index": key_receipt.index},
                 f"Registered organisation {oid} ({jurisdiction})")
    if not context.want_json(ctx, json_):
        context.console.print(f"Enrolled encryption key {key_id} of {oid}; key in {path} "
                              f"[dim](log index {key_receipt.index})[/]", highlight=False)


@key_app.command("rotate")
def org_key_rotate(
    ctx: typer.Context,
    org: Annotated[str, typer.Argument(help="The organisation.")],
    no_passphrase: Annotated[bool, _NO_KEY_PASSPHRASE] = False,
    as_: As = None,
    json_: Json = False,
) -> None:
    """Create a new encryption key for ORG in this home and enrol it (admin of ORG, or any
    admin while ORG has no admin of its own). It becomes the current key; the previous
    one is retired (kept as HOME/keys/orgs/ORG.KEYID.key: packages already sealed to it
    can still be opened). Also the way to give an organisation its first key."""
    from ledger import keys

    c = context.get(ctx)
    home = c.loaded()
    admin = c.actor(as_)
    service = c.custody()
    previous = service.org_keys(org).get("current")
    passphrase = org_key_passphrase(home, admin.actor_id, no_passphrase, org)
    receipt, key_id, path = create_org_key(home, service, admin, org, passphrase)
    recipient = str(keys.identity_info(path)["recipient"])
    message = f"Rotated the encryption key of {org}: {key_id} is current" + (
        f", {previous} retired" if previous else "") + f"; key in {path}"
    context.done(ctx, json_, receipt, {"org": org, "key_id": key_id, "recipient": recipient,
                                       "retired": previous, "key_file": str(path)}, message)


@key_app.command("revoke")
def org_key_revoke(
    ctx: typer.Context,
    org: Annotated[str, typer.Argument(help="The organisation.")],
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key id ('custody org "
                                          "key show ORG' lists them).")],
    reason: Annotated[str, typer.Option(help="Why (e.g. key file lost, laptop stolen).")],
    as_: As = None,
    json_: Json = False,
) -> None:
    """Revoke an encryption key of ORG: no package may be sealed to it any more. If it was
    the current key, ORG has none until 'custody org key rotate ORG'. The key file, if
    this home holds it, is kept (packages sealed to it earlier can still be opened)."""
    c = context.get(ctx)
    admin = c.actor(as_)
    service = c.custody()
    receipt = service.revoke_org_key(admin, org, key_id, reason)
    current = service.org_keys(org).get("current")
    message = f"Revoked encryption key {key_id} of {org}"
    if current is None:
        message += f"; {org} has no current encryption key (run: custody org key rotate {org})"
    context.done(ctx, json_, receipt, {"org": org, "key_id": key_id, "current": current},
                 message)


@key_app.command("show")
def org_key_show(
    ctx: typer.Context,
    org: Annotated[str, typer.Argument(help="The organisation.")],
    as_: As = None,
    json_: Json = False,
) -> None:
    """Show ORG's current encryption key (id and age recipient) and every key it has had,
    with its status (current, retired, revoked), and whether this home holds it."""
    from ledger.home import custody as custody_of

    c = context.get(ctx)
    home = c.loaded()
    rec = custody_of(home, c.reading_as(as_).reader()).org_keys(org)
    local = home.local_org_keys(org)
    current = rec.get("current")
    rows = [{"key_id": kid, "recipient": k["recipient"], "status": k["status"],
             "enrolled_at": k["enrolled_at"], "revoked_at": k.get("revoked_at"),
             "reason": k.get("reason", ""), "local": kid in local}
            for kid, k in sorted(rec.get("keys", {}).items(),
                                 key=lambda item: item[1]["enrolled_at"])]
    recipient = rec["keys"][current]["recipient"] if current else None
    if context.want_json(ctx, json_):
        context.emit_json({"org": org, "current": current, "recipient": recipient,
                           "keys": rows})
        return
    if current is None:
        context.console.print(f"{org} has no current encryption key (run: custody org key "
                              f"rotate {org})", highlight=False)
    else:
        context.console.print(f"{org}: current encryption key {current}", highlight=False)
        context.console.print(f"  recipient {recipient}", highlight=False)
    if not rows:
        return
    from rich.table import Table

    table = Table("key id", "status", "enrolled at", "revoked at", "reason", "in this home")
    for row in rows:
        table.add_row(row["key_id"], row["status"], str(row["enrolled_at"]),
                      "" if row["revoked_at"] is None else str(row["revoked_at"]),
                      row["reason"], "yes" if row["local"] else "no")
    context.console.print(table)


@org_app.command("list")
def org_list(ctx: typer.Context, as_: As = None, json_: Json = False) -> None:
    """List organisations."""
    context.listing(ctx, json_, ORG, ["id", "name", "jurisdiction"], as_)


def parse_roles(value: str) -> list[str]:
    roles = [r.strip() for r in value.split(",") if r.strip()]
    bad = [r for r in roles if r not in ROLES]
    if not roles or bad:
        raise InvalidInput(f"unknown role(s) {', '.join(bad) or '(none)'}; roles are: "
                           + ", ".join(ROLES))
    return list(dict.fromkeys(roles))


@actor_app.command("enrol")
def actor_enrol(
    ctx: typer.Context,
    org: Annotated[str, typer.Option(help="The actor's organisation id.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    role: Annotated[str, typer.Option(help="Roles, comma-separated: " + ", ".join(ROLES))],
    actor_id: Annotated[str | None, typer.Option("--id", help="Actor id (default: from the "
                                                 "name).")] = None,
    no_passphrase: Annotated[bool, typer.Option("--no-passphrase", help="Store the new key "
                                                "unencrypted (0600 only).")] = False,
    public_key_b64: Annotated[str | None, typer.Option(
        "--public-key", help="Enrol a key created elsewhere ('custody join' prints it); no "
        "private key is created here.")] = None,
    as_: As = None,
    json_: Json = False,
) -> None:
    """Enrol an actor and record their public key on the ledger. Without --public-key the
    key pair is created here, under the home (0600, encrypted with a passphrase unless
    --no-passphrase); with it, the private key stays on the actor's own machine."""
    from ledger import keys
    from ledger.core import _sodium

    c = context.get(ctx)
    roles = parse_roles(role)
    aid = actor_id or slug(name)
    home = c.loaded()
    admin = c.actor(as_)
    if public_key_b64 is not None:
        public_key = _decode_public_key(public_key_b64)
        receipt = c.custody().enrol(admin, actor_id=aid, org=org, name=name, roles=roles,
                                    public_key=public_key)
        context.done(ctx, json_, receipt, {"actor": aid, "org": org, "roles": roles,
                                           "key_file": None},
                     f"Enrolled {aid} ({', '.join(roles)}) of {org} with their own key")
        return
    path = home.actor_key_path(aid)
    if path.exists():
        raise InvalidInput(f"a local key for {aid} already exists at {path}")
    seed = os.urandom(32)
    public_key = _sodium.public_key_from_seed(seed)
    passphrase = new_passphrase(no_passphrase, f"actor {aid}")
    keys.write_key(path, aid, seed, passphrase)
    try:
        receipt = c.custody().enrol(admin, actor_id=aid, org=org, name=name, roles=roles,
                                    public_key=public_key)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    context.done(ctx, json_, receipt, {"actor": aid, "org": org, "roles": roles,
                                       "key_file": str(path)},
                 f"Enrolled {aid} ({', '.join(roles)}) of {org}; key in {path}")


def _decode_public_key(value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise InvalidInput("--public-key must be the base64 of a 32-byte Ed25519 key") from exc
    if len(raw) != 32:
        raise InvalidInput("--public-key must be the base64 of a 32-byte Ed25519 key")
    return raw


@actor_app.command("revoke")
def actor_revoke(
    ctx: typer.Context,
    actor: Annotated[str, typer.Argument(help="The actor to revoke.")],
    reason: Annotated[str, typer.Option(help="Why (e.g. key lost).")] = "",
    as_: As = None,
    json_: Json = False,
) -> None:
    """Revoke an actor's key. Events it signed earlier still verify; later ones are refused."""
    c = context.get(ctx)
    admin = c.actor(as_)
    receipt = c.custody().revoke(admin, actor, reason)
    context.done(ctx, json_, receipt, {"actor": actor},
                 f"Revoked {actor} at log index {receipt.index}")


@actor_app.command("list")
def actor_list(ctx: typer.Context, as_: As = None, json_: Json = False) -> None:
    """List actors with their roles and status."""
    context.listing(ctx, json_, ACTOR, ["id", "org", "name", "roles", "status", "key_id"], as_)
