"""A short crash campaign per backend, so the long one (docs/reliability.md) cannot rot.

Runs ``python -m tests.reliability crash`` as a subprocess (it forks writers and, on
PostgreSQL, starts, SIGKILLs and restarts a throwaway cluster of its own — never the
shared test cluster) and asserts zero acknowledged events lost and zero audit failures.

The checker is itself checked: a deliberately lying writer, which journals its
acknowledgement BEFORE it commits, must be reported as losing events (exit 1), and a
state row edited behind the ledger's back must fail the audit step of the check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import pgcluster

ROOT = Path(__file__).resolve().parents[2]
CYCLES = int(os.environ.get("CUSTODY_CRASH_CYCLES", "30"))

pytestmark = pytest.mark.timeout(1200)


def campaign(*args: str) -> tuple[int, dict[str, Any], str]:
    env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false"}
    done = subprocess.run([sys.executable, "-m", "tests.reliability", "crash", *args, "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1100,
                          check=False)
    lines = done.stdout.strip().splitlines()
    assert lines, f"no summary (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return done.returncode, json.loads(lines[-1]), done.stderr


def _assert_clean(code: int, summary: dict[str, Any], progress: str, cycles: int) -> None:
    context = json.dumps(summary, indent=1) + "\n" + progress[-2000:]
    assert summary["cycles"] == cycles, context
    assert summary["lost"] == 0, context
    assert summary["audit_failures"] == 0, context
    assert summary["next_append_failures"] == 0, context
    assert summary["writer_crashes"] == 0, context
    assert summary["writer_kills"] >= cycles, context  # every cycle killed writers
    assert summary["acknowledged_events_checked"] > cycles, context
    assert code == 0, context


def _need_postgres() -> None:
    if not pgcluster.available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are missing but CI=true: the "
                        "crash campaign must run on PostgreSQL in CI")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")


def test_short_campaign_sqlite() -> None:
    code, summary, progress = campaign("--cycles", str(CYCLES), "--backend", "sqlite",
                                       "--seed", "1401")
    _assert_clean(code, summary, progress, CYCLES)
    assert summary["faults_injected"] >= CYCLES * 4


@pytest.mark.postgres
def test_short_campaign_postgres() -> None:
    _need_postgres()
    code, summary, progress = campaign("--cycles", str(CYCLES), "--backend", "postgres",
                                       "--seed", "1402", "--server-kill-rate", "0.4")
    _assert_clean(code, summary, progress, CYCLES)
    assert summary["postgres_server_kills"] >= 1, summary


def test_short_campaign_through_the_api() -> None:
    cycles = max(5, CYCLES // 3)
    code, summary, progress = campaign("--cycles", str(cycles), "--backend", "sqlite",
                                       "--via", "api", "--seed", "1403")
    _assert_clean(code, summary, progress, cycles)
    assert summary["api_server_kills"] == cycles, summary


def test_the_checker_catches_a_writer_that_acknowledges_before_committing() -> None:
    code, summary, _ = campaign("--cycles", "8", "--backend", "sqlite", "--lying-writer",
                                "--seed", "1404")
    assert code == 1, summary
    assert summary["lost"] >= 1, summary
    assert not summary["ok"]
    assert all("no entry at that index" in s or "holds event" in s
               for s in summary["lost_samples"]), summary


def test_the_checker_fails_the_audit_of_a_half_applied_state(tmp_path: Path) -> None:
    """An entry whose state write is missing or wrong (edited behind the log) must fail
    the check's audit step, and a lost acknowledged entry must be reported."""
    import sqlalchemy as sa

    from tests.reliability import world as W
    from tests.reliability.campaign import check_ledger
    from tests.reliability.writers import Ack

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    size = W.build(url)
    clean = check_ledger(url, [])
    assert clean.audit_ok
    assert clean.next_ack is not None
    assert not clean.lost
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        edited = conn.execute(
            sa.text("UPDATE state SET value = replace(value, :old, :new) "
                    "WHERE key = :key AND value LIKE :like"),
            {"key": "art/" + W.BASE_ARTEFACT, "old": '"incidents":0', "new": '"incidents":1',
             "like": '%"incidents":0%'})
        assert edited.rowcount == 1
    engine.dispose()
    forged = Ack("0" * 64, size + 5, "00" * 32, "test", "forged")
    damaged = check_ledger(url, [clean.next_ack, forged])
    assert not damaged.audit_ok, damaged
    assert [a.event_id for a in damaged.lost] == ["0" * 64]
