"""Durable append, group commit and proof latency of the SQL store, with references.

Figures (every one next to a reference measured in the same run, on the same disk):

* ``single``: durable single-event ``SqlStore.append`` on SQLite (WAL, synchronous=FULL),
  events pre-signed so only the store path is timed; rate, p50/p99 latency, and the
  ratio to a raw durable SQLite commit of one row (``refs.sqlite_raw_durable_commit``,
  measured just before and just after; the mean is the reference). Target >= 0.50,
  p99 <= 2 ms. The 4 KiB write+fsync loop is reported too.
* ``group``: ``append_many`` in batches of 500 versus raw batched ``sqlite3`` inserts
  (the same reference's batched figure). Target >= 10k events/s.
* ``pages``: the WAL pages one durable single append writes, by table, and a raw
  durable SQLite commit writing as many pages (one row into each of that many tables)
  in the same run: the floor of a commit of that size.
* ``postgresql``: the same two figures on PostgreSQL, next to a raw psycopg commit of
  one row (and 1,000-row batches) in a table of the same database, when
  ``BENCH_PG_URL`` names a PostgreSQL admin URL (e.g. ``CUSTODY_TEST_PG_URL`` of
  ``.ci/postgres.sh``); a throwaway database is created and dropped.
* ``proofs``: ``inclusion_proof`` / ``consistency_proof`` p50/p99 at 1M entries (quick:
  20k), on a log built directly (synthetic leaves, nodes from ``merkle.Frontier``,
  ``executemany`` in big transactions). Target p50 <= 1 ms. (At 10M: ``bench scale``.)

Standalone: ``python -m bench append [--quick]``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import refs
from ledger.core import _sodium, merkle, merkle_verify
from ledger.core import events as ev
from ledger.core.note import NoteSigner
from ledger.evidence import Digests
from ledger.service import ActorKey, Custody
from ledger.store.sql import SqlStore, make_engine, migrate

ORIGIN = "bench.example/custody"
TARGET_SINGLE_VS_RAW = 0.50
TARGET_P99_MS = 2.0
TARGET_GROUP_RATE = 10_000
TARGET_PROOF_P50_MS = 1.0
BATCH = 500


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def _clock() -> int:
    return time.time_ns() // 1_000_000


def _ledger(directory: Path, name: str) -> tuple[SqlStore, Custody, ActorKey]:
    return _ledger_at(f"sqlite:///{directory / name}")


def _ledger_at(url: str) -> tuple[SqlStore, Custody, ActorKey]:
    log = NoteSigner(ORIGIN, os.urandom(32))
    store = SqlStore.open(url, signer=log, clock=_clock, create=True)
    svc = Custody(store, origin=ORIGIN, clock=_clock, random=os.urandom)
    admin = ActorKey("admin", _sodium.Signer(os.urandom(32)))
    svc.genesis(admin, org_id="bka", org_name="BKA", jurisdiction="DE", actor_name="A",
                roles=["admin", "examiner", "custodian", "prosecutor"],
                log_key=log.verifier_key)
    svc.open_case(admin, "CASE-1")
    data = os.urandom(64)
    import hashlib

    digests = Digests(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(),
                      None, len(data))
    svc.register(admin, case="CASE-1", digests=digests, artefact_id="art-1")
    return store, svc, admin


def _events(svc: Custody, admin: ActorKey, n: int) -> list[ev.SignedEvent]:
    payload = {"artefact": "art-1", "action": "view", "purpose": "benchmark",
               "outcome": "success"}
    return [svc.event(ev.ACCESS, admin, payload) for _ in range(n)]


def single(url: str, n: int) -> dict[str, Any]:
    store, svc, admin = _ledger_at(url)
    try:
        events = _events(svc, admin, n)
        for e in events[:20]:  # warm-up: caches, frontier, statement compilation
            store.append(e)
        latencies: list[float] = []
        start = time.perf_counter()
        for e in events[20:]:
            t0 = time.perf_counter()
            store.append(e)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    return {"value": len(latencies) / elapsed, "unit": "events/s",
            "p50_ms": _ms(statistics.median(latencies)), "p99_ms": _ms(_pct(latencies, 0.99)),
            "n": len(latencies),
            "method": "SqlStore.append of pre-signed access events, one transaction and one "
            "signed checkpoint each (SQLite: WAL, synchronous=FULL)"}


def group(url: str, batches: int) -> dict[str, Any]:
    store, svc, admin = _ledger_at(url)
    try:
        prepared = [_events(svc, admin, BATCH) for _ in range(batches + 1)]
        store.append_many(prepared[0])  # warm-up
        latencies: list[float] = []
        start = time.perf_counter()
        for batch in prepared[1:]:
            t0 = time.perf_counter()
            out = store.append_many(batch)
            latencies.append(time.perf_counter() - t0)
            assert all(not isinstance(o, Exception) for o in out)
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    return {"value": batches * BATCH / elapsed, "unit": "events/s",
            "batch_p50_ms": _ms(statistics.median(latencies)), "batches": batches,
            "method": f"SqlStore.append_many of {BATCH} pre-signed events per transaction "
            "(signatures checked ahead in worker processes, rules, Merkle nodes, refs, "
            "state, state map, one checkpoint; SQLite: WAL, synchronous=FULL)"}


def build_big_log(path: Path, size: int) -> bytes:
    """A migrated ledger DB with ``size`` synthetic entries and all their Merkle nodes.

    Leaves are synthetic (proofs need only nodes); inserted with raw sqlite3
    ``executemany`` in large transactions, synchronous=OFF during the build only.
    Returns the root.
    """
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    frontier = merkle.Frontier.empty()
    chunk = 100_000
    for lo in range(0, size, chunk):
        entries, nodes = [], []
        for i in range(lo, min(size, lo + chunk)):
            leaf = b"synthetic leaf %d" % i
            lh = merkle.leaf_hash(leaf)
            entries.append((i, leaf, lh, f"{i:064x}", 0))
            nodes.extend(frontier.add_leaf(lh))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO entries (idx, leaf, leaf_hash, event_id, ledger_time) "
                         "VALUES (?, ?, ?, ?, ?)", entries)
        conn.executemany("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
        conn.execute("COMMIT")
    conn.execute("UPDATE head SET size = ? WHERE id = 1", (size,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return frontier.root()


def proofs(directory: Path, size: int, samples: int, budget_s: float = 60.0) -> dict[str, Any]:
    path = directory / "big.db"
    t0 = time.perf_counter()
    root = build_big_log(path, size)
    build_s = time.perf_counter() - t0
    _log(f"bench append: built a {size}-entry log in {build_s:.1f} s")
    store = SqlStore.open(f"sqlite:///{path}", signer=None, clock=_clock)
    rng = random.Random(6962)
    try:
        assert store.root(size) == root
        inc: list[float] = []
        con: list[float] = []
        deadline = time.perf_counter() + budget_s  # bounded even if proofs are O(n)
        for _ in range(samples):
            if len(inc) >= 20 and time.perf_counter() > deadline:
                break
            i = rng.randrange(size)
            t = time.perf_counter()
            proof = store.inclusion_proof(i, size)
            inc.append(time.perf_counter() - t)
            if len(inc) <= 20:
                merkle_verify.verify_inclusion(store.entry(i).leaf_hash, i, size, proof, root)
            old = rng.randrange(1, size)
            t = time.perf_counter()
            cproof = store.consistency_proof(old, size)
            con.append(time.perf_counter() - t)
            if len(con) <= 20:
                merkle_verify.verify_consistency(old, size, store.root(old), root, cproof)
    finally:
        store.close()
    return {
        "size": size, "samples": len(inc), "build_s": round(build_s, 2),
        "inclusion": {"p50_ms": _ms(statistics.median(inc)), "p99_ms": _ms(_pct(inc, 0.99))},
        "consistency": {"p50_ms": _ms(statistics.median(con)), "p99_ms": _ms(_pct(con, 0.99))},
        "method": "SqlStore.inclusion_proof/consistency_proof at random indices/old sizes "
        "against the full tree (one node query each); first 20 of each verified",
        "target_p50_ms": TARGET_PROOF_P50_MS,
    }


def wal_pages(directory: Path, warm: int = 2000, n: int = 50) -> dict[str, Any]:
    """Where a durable single append's commit goes: the WAL frames (B-tree pages) one
    append writes, by table, after ``warm`` appends (measured with the WAL not
    checkpointed in between: the frames of ``n`` appends, mapped to tables by
    ``dbstat``)."""
    import struct
    from collections import Counter

    path = directory / "pages.db"
    store, svc, admin = _ledger_at(f"sqlite:///{path}")
    try:
        events = _events(svc, admin, warm + n)
        store.append_many(events[:warm // 2])
        for e in events[warm // 2:warm]:
            store.append(e)
        checkpointer = getattr(store, "_wal", None)  # the store's own WAL checkpointer
        if checkpointer is not None:
            checkpointer.close()
            store._wal = None
        store.engine.dispose()
        sa_event_listen(store.engine)  # writers from now on: no automatic checkpoint
        raw = sqlite3.connect(path)
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw.close()
        for e in events[warm:]:
            store.append(e)
        wal = (directory / "pages.db-wal").read_bytes()
    finally:
        store.close()
    size = struct.unpack(">I", wal[8:12])[0]
    pages = [struct.unpack(">I", wal[at:at + 4])[0]
             for at in range(32, len(wal) - size - 23, size + 24)]
    conn = sqlite3.connect(path)
    try:
        owner = dict(conn.execute("SELECT pageno, name FROM dbstat"))
    finally:
        conn.close()
    by_table = Counter(owner.get(p, "(new page)") for p in pages)
    return {"pages_per_append": round(len(pages) / n, 1),
            "by_table": {k: round(v / n, 2) for k, v in by_table.most_common()},
            "method": f"WAL frames of {n} single appends after {warm} (no checkpoint in "
            "between), each frame's page mapped to its table or index by dbstat"}


def sa_event_listen(engine: Any) -> None:
    """Writers on ``engine`` no longer run SQLite's automatic checkpoint."""
    import sqlalchemy as sa

    @sa.event.listens_for(engine, "connect")
    def _off(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def sqlite_commit_of_pages(directory: Path, pages: int, n: int) -> dict[str, Any]:
    """A raw durable SQLite commit that writes ``pages`` B-tree pages (one 300-byte row
    into each of ``pages`` tables), as the floor for a commit of that many pages."""
    path = directory / f"pages-{pages}.db"
    payload = os.urandom(300)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        for i in range(pages):
            conn.execute(f"CREATE TABLE t{i} (id INTEGER PRIMARY KEY, body BLOB)")
        inserts = [f"INSERT INTO t{i} (body) VALUES (?)" for i in range(pages)]  # noqa: S608
        start = time.perf_counter()
        for _ in range(n):
            conn.execute("BEGIN")
            for sql in inserts:
                conn.execute(sql, (payload,))
            conn.execute("COMMIT")
        rate = n / (time.perf_counter() - start)
    finally:
        conn.close()
    return {"value": rate, "unit": "commits/s", "pages": pages,
            "method": f"raw sqlite3, WAL, synchronous=FULL, one row into each of {pages} "
            f"tables per transaction, {n} transactions"}


def pg_raw_durable_commit(url: str, n: int) -> dict[str, Any]:
    """Raw psycopg on the same server and database: one 300-byte row per committed
    transaction (``synchronous_commit`` as the server has it), then 1,000-row batches."""
    import psycopg

    payload = os.urandom(300)
    with psycopg.connect(url) as conn:
        settings = {k: conn.execute(f"SHOW {k}").fetchone()[0]  # type: ignore[index]
                    for k in ("fsync", "synchronous_commit", "wal_sync_method")}
        conn.execute("CREATE TABLE bench_ref (id bigserial PRIMARY KEY, body bytea NOT NULL)")
        conn.commit()
        latencies: list[float] = []
        start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            conn.execute("INSERT INTO bench_ref (body) VALUES (%s)", (payload,))
            conn.commit()
            latencies.append(time.perf_counter() - t0)
        single_rate = n / (time.perf_counter() - start)
        batch, batches = 1000, max(5, n // 100)
        rows = [(payload,)] * batch
        start = time.perf_counter()
        for _ in range(batches):
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO bench_ref (body) VALUES (%s)", rows)
            conn.commit()
        batched = batch * batches / (time.perf_counter() - start)
    return {"value": single_rate, "unit": "commits/s",
            "p50_ms": _ms(statistics.median(latencies)), "p99_ms": _ms(_pct(latencies, 0.99)),
            "n": n, "server": settings,
            "method": "raw psycopg, one 300-byte row per committed transaction, "
            f"{n} transactions, same server and database as the ledger",
            "batched": {"value": batched, "unit": "rows/s",
                        "method": f"same table, {batch} rows per transaction (executemany), "
                        f"{batches} transactions"}}


def postgres(admin_url: str, n_single: int, batches: int) -> dict[str, Any]:
    """Single append and group commit on PostgreSQL beside the raw references, in a
    throwaway database of the server at ``admin_url``."""
    import uuid

    import sqlalchemy as sa

    sa_url = admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
    admin = sa.create_engine(sa_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    made = []

    def database() -> str:
        name = "custody_bench_" + uuid.uuid4().hex[:12]
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        made.append(name)
        return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    try:
        _log("bench append: PostgreSQL raw reference ...")
        raw = pg_raw_durable_commit(database(), n_single)
        _log("bench append: PostgreSQL single durable appends ...")
        one = single(database(), n_single)
        _log("bench append: PostgreSQL group commit ...")
        grp = group(database(), batches)
        raw_after = pg_raw_durable_commit(database(), n_single)
    finally:
        with admin.connect() as conn:
            for name in made:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    ref = (raw["value"] + raw_after["value"]) / 2
    return {
        "single_vs_raw_commit": round(one["value"] / ref, 3),
        "single_p99_ms": one["p99_ms"],
        "group_events_per_s": round(grp["value"]),
        "group_vs_raw_batched": round(grp["value"] / raw["batched"]["value"], 3),
        "single": one, "group": grp,
        "references": {"raw_commit_before": raw, "raw_commit_after": raw_after,
                       "raw_commit_mean": round(ref, 1)},
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run(quick: bool) -> dict[str, Any]:
    n_single = 300 if quick else 3000
    batches = 2 if quick else 20
    big = 20_000 if quick else 1_000_000
    samples = 300 if quick else 2000
    load_before = _loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-append-",
                                     dir=os.environ.get("BENCH_TMPDIR")) as tmp:
        d = Path(tmp)
        _log("bench append: fsync-loop and raw sqlite references ...")
        fsync = refs.fsync_loop(d, n_single)
        raw = refs.sqlite_raw_durable_commit(d, n_single)
        _log("bench append: single durable appends ...")
        one = single(f"sqlite:///{d / 'single.db'}", n_single)
        raw_after = refs.sqlite_raw_durable_commit(d, n_single)
        _log("bench append: pages per append ...")
        pages = wal_pages(d, warm=300 if quick else 2000)
        floor = sqlite_commit_of_pages(d, round(pages["pages_per_append"]), n_single)
        _log("bench append: group commit ...")
        grp = group(f"sqlite:///{d / 'group.db'}", batches)
        pg_url = os.environ.get("BENCH_PG_URL")
        pg: dict[str, Any] | str = postgres(pg_url, n_single, batches) if pg_url else \
            "not measured: set BENCH_PG_URL to a PostgreSQL admin URL"
        _log("bench append: proofs ...")
        prf = proofs(d, big, samples)
    ref = (raw["value"] + raw_after["value"]) / 2
    batched = (raw["batched"]["value"] + raw_after["batched"]["value"]) / 2
    return {
        "single_vs_raw_commit": round(one["value"] / ref, 3),
        "single_p99_ms": one["p99_ms"],
        "single_vs_fsync": round(one["value"] / fsync["value"], 3),
        "pages_per_append": pages["pages_per_append"],
        "raw_commit_of_as_many_pages_vs_raw_commit": round(floor["value"] / ref, 3),
        "group_events_per_s": round(grp["value"]),
        "group_vs_raw_batched": round(grp["value"] / batched, 3),
        "inclusion_p50_ms": prf["inclusion"]["p50_ms"],
        "consistency_p50_ms": prf["consistency"]["p50_ms"],
        "targets": {"single_vs_raw_commit": TARGET_SINGLE_VS_RAW,
                    "single_p99_ms": TARGET_P99_MS,
                    "group_events_per_s": TARGET_GROUP_RATE,
                    "proof_p50_ms": TARGET_PROOF_P50_MS},
        "single": one, "group": grp, "pages": pages, "postgresql": pg, "proofs": prf,
        "references": {"fsync_loop": fsync, "sqlite_raw_durable_commit": raw,
                       "sqlite_raw_durable_commit_after": raw_after,
                       "sqlite_raw_commit_mean": round(ref, 1),
                       "sqlite_raw_commit_of_as_many_pages": floor},
        "loadavg": [load_before, _loadavg()],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), indent=2))
