"""Consortium throughput and commit latency on a real local Fabric network.

For 2 and then 3 organisations (one peer each, Raft orderers, every submission endorsed
by EVERY organisation: the AND case), the same number of client threads run for the
same time:

* **reference**: a no-op chaincode call (``ping``: no state read or written) submitted
  and waited for until VALID, through the same client;
* **custody**: a custody event (an access record, signed by an actor, checked by the
  chaincode against the same rules as SQLite, with its state-based endorsement) through
  :class:`ledger.fabric.store.FabricStore`, i.e. until the event is VALID in a block AND
  taken into the organisation's derived log, with its receipt.

Both use one client (one store) shared by every thread, as an API server does.

Reported: transactions/s of each, their ratio, p50/p99 latency. Not in ``all``: it
builds the Fabric binaries if needed and starts networks (``python -m bench fabric``).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

IN_ALL = False


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _measure(workers: int, seconds: float,
             make: Callable[[], Callable[[], None]]) -> dict[str, Any]:
    """``workers`` threads, each calling its own operation (from ``make``) for ``seconds``."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    ops = [make() for _ in range(workers)]
    start = threading.Barrier(workers + 1)
    stop_at = [0.0]

    def loop(op: Callable[[], None]) -> None:
        start.wait()
        while time.monotonic() < stop_at[0]:
            t0 = time.monotonic()
            try:
                op()
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            with lock:
                latencies.append(time.monotonic() - t0)

    threads = [threading.Thread(target=loop, args=(op,)) for op in ops]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + seconds
    t0 = time.monotonic()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    return {"tx_per_s": round(len(latencies) / elapsed, 1), "count": len(latencies),
            "errors": len(errors), "first_errors": errors[:3],
            "p50_s": round(_percentile(latencies, 0.5), 3),
            "p99_s": round(_percentile(latencies, 0.99), 3),
            "mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
            "workers": workers, "seconds": round(elapsed, 1)}


def _one(orgs: list[str], orderers: int, workers: int, seconds: float) -> dict[str, Any]:
    import network
    from ledger.core import events as ev
    from ledger.core._sodium import Signer
    from ledger.fabric import wire
    from ledger.fabric.client import FabricClient
    from ledger.fabric.store import FabricStore
    from ledger.home import now_ms
    from ledger.service import ActorKey, Custody

    with tempfile.TemporaryDirectory(prefix="custody-bench-fabric-") as tmp:
        folder = Path(tmp) / "net"
        t0 = time.monotonic()
        network.up(orgs, folder, orderers=orderers)
        up_s = time.monotonic() - t0
        stores: list[FabricStore] = []
        clients: list[FabricClient] = []
        try:
            profile = network.load_profile(folder).profile
            store = FabricStore.open(folder, orgs[0], clock=now_ms, local_nodes=False)
            stores.append(store)
            admin = ActorKey("bench-admin", Signer(os.urandom(32)))
            svc = Custody(store, origin=str(profile["origin"]), clock=now_ms,
                          random=os.urandom)
            svc.genesis(admin, org_id="org0", org_name="Org 0", jurisdiction=orgs[0],
                        actor_name="Admin", roles=["admin", "examiner", "custodian"],
                        log_key=store.log_key)
            svc.open_case(admin, "BENCH", "bench")
            from ledger.evidence import Digests

            digest = Digests("ab" * 32, "cd" * 64, None, 1)
            art = svc.register(admin, case="BENCH", digests=digest,
                               artefact_id="bench-art").result["artefact"]

            # One client and one store shared by every thread, as in an API server.
            client = FabricClient.from_profile(dict(profile), orgs[0])
            clients.append(client)

            def noop() -> Callable[[], None]:
                return lambda: client.submit(wire.CHAINCODE, wire.FN_PING, [])

            def custody() -> Callable[[], None]:
                def op() -> None:
                    store.append(svc.event(ev.ACCESS, admin, {
                        "artefact": art, "action": "view", "purpose": "bench",
                        "outcome": "success"}))
                return op

            reference = _measure(workers, seconds, noop)
            measured = _measure(workers, seconds, custody)
        finally:
            for s in stores:
                s.close()
            for c in clients:
                c.close()
            network.down(folder, purge=True)
    ratio = (measured["tx_per_s"] / reference["tx_per_s"]) if reference["tx_per_s"] else None
    return {"orgs": orgs, "orderers": orderers, "network_up_s": round(up_s, 1),
            "reference_noop": reference, "custody": measured,
            "ratio": None if ratio is None else round(ratio, 2),
            "targets": {"custody_tx_per_s": ">= 50", "ratio": ">= 0.8", "p50_s": "<= 0.5"}}


def run(quick: bool) -> dict[str, Any]:
    workers, seconds = (4, 5.0) if quick else (16, 30.0)
    orderers = 1 if quick else 3
    cases = [_one(orgs, orderers, workers, seconds)
             for orgs in (["DE", "NL"], ["DE", "NL", "FR"])]
    return {"method": "Threads submit for a fixed time; each operation is timed from "
                      "proposal to VALID (and, for custody events, to the receipt from the "
                      "derived log). Endorsed by every organisation (AND).",
            "cases": cases}
