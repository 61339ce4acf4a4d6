"""``custody org …`` and ``custody actor …``: organisations (agencies) and people."""

from __future__ import annotations

import base64
import os
from typing import Annotated

import typer

from cli import context
from cli.commands.setup import check_country, new_passphrase, slug
from cli.options import As, Json
from ledger import _sodium, keys
from ledger.errors import InvalidInput
from ledger.vocab import ROLES

org_app = typer.Typer(help="Organisations: one agency in one jurisdiction.",
                      no_args_is_help=True)
actor_app = typer.Typer(help="Actors: people who sign events, with roles and keys.",
                        no_args_is_help=True)


@org_app.command("add")
def org_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="The agency's name.")],
    jurisdiction: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2 country code.")],
    org_id: Annotated[str | None, typer.Option("--id", help="Id (default: from the name).")]
    = None,
    as_: As = None,
    json_: Json = False,
) -> None:
    """Register an organisation (admin only)."""
    c = context.get(ctx)
    jurisdiction = check_country(jurisdiction.strip().upper())
    oid = org_id or slug(name)
    actor = c.actor(as_)
    receipt = c.custody().add_org(actor, oid, name, jurisdiction)
    context.done(ctx, json_, receipt, {"org": oid, "jurisdiction": jurisdiction},
                 f"Registered organisation {oid} ({jurisdiction})")


@org_app.command("list")
def org_list(ctx: typer.Context, as_: As = None, json_: Json = False) -> None:
    """List organisations."""
    context.listing(ctx, json_, "org/", ["id", "name", "jurisdiction"], as_)


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
    context.listing(ctx, json_, "actor/", ["id", "org", "name", "roles", "status", "key_id"],
                    as_)
