"""``custody log rebuild-state``: after a hostile edit of the state cache, writes are
refused naming the key; the operator rebuilds the cache from the log (only if the replay
gives the signed state-map root) and everything works again, nothing lost."""

from __future__ import annotations

import json
import sqlite3

from tests.cli.conftest import World


def _sql(world: World, sql: str, *params: object) -> None:
    con = sqlite3.connect(world.home / "ledger.db")
    with con:
        con.execute(sql, params)
    con.close()


def _state(world: World, key: str) -> str | None:
    con = sqlite3.connect(world.home / "ledger.db")
    row = con.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    con.close()
    return None if row is None else str(row[0])


def test_an_edited_state_is_refused_then_rebuilt_from_the_log(world: World) -> None:
    key = "art/" + world.art
    genuine = _state(world, key)
    assert genuine is not None
    forged = json.dumps({**json.loads(genuine), "custodian": "ofac"})
    _sql(world, "UPDATE state SET value = ? WHERE key = ?", forged, key)
    size = world.size()
    # The non-custodian the edit names may not dispatch: the write is refused, unwritten.
    res = world.cli("transfer", world.art, "--to", "nfi", "--purpose", "x", "--as",
                    "fr-analyst")
    assert res.code == 1, res.err
    assert f"'{key}' was edited outside the log" in res.err
    assert world.size() == size
    fixed = world.cli("log", "rebuild-state", "--json", expect=0).json
    assert fixed == {"size": size, "repaired": [key]}
    assert _state(world, key) == genuine
    world.cli("audit", expect=0)
    world.cli("access", world.art, "--action", "view", "--purpose", "after repair",
              "--as", "nl-custodian", expect=0)
    again = world.cli("log", "rebuild-state", "--json", expect=0).json
    assert again["repaired"] == []


def test_deleted_and_inserted_rows_are_repaired_too(world: World) -> None:
    _sql(world, "DELETE FROM state WHERE key = ?", "actor/nl-custodian")
    _sql(world, "INSERT INTO state (key, value, idx, bucket) VALUES (?, '{}', 1, 7)",
         "actor/evil")
    fixed = world.cli("log", "rebuild-state", "--json", expect=0).json
    assert fixed["repaired"] == ["actor/evil", "actor/nl-custodian"]
    assert _state(world, "actor/evil") is None
    world.cli("audit", expect=0)


def test_a_log_that_does_not_replay_is_never_used_to_rebuild(world: World) -> None:
    key = "art/" + world.art
    forged = json.dumps({**json.loads(_state(world, key) or "{}"), "custodian": "ofac"})
    _sql(world, "UPDATE state SET value = ? WHERE key = ?", forged, key)
    _sql(world, "DROP TRIGGER entries_no_update")
    # replace() turns the BLOB into TEXT as well: a reader must not crash on that either.
    _sql(world, "UPDATE entries SET leaf = replace(leaf, '\"index\":', '\"index\": ') "
         "WHERE idx = (SELECT max(idx) FROM entries)")
    res = world.cli("log", "rebuild-state")
    assert res.code == 1
    assert "does not replay" in res.err
    assert _state(world, key) == forged  # nothing changed
