"""A short soak (issue #14, part 5), so the long one (docs/reliability.md) cannot rot.

The real API server (uvicorn, SQLite) is measured for its capacity, then held at it with
a mix of writes and reads (:mod:`.soak`): zero 5xx, the server's memory (RSS) does not
run away, every acknowledged write is in the log and the audit passes. The ten-minute
run is ``python -m tests.reliability soak --minutes 10``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.reliability import soak

#: Seconds of the short soak (after a 5-second capacity measurement).
SOAK_S = float(os.environ.get("CUSTODY_SOAK_SECONDS", "20"))
#: A generous bound on the server's RSS growth over the short soak: a leak of a few KiB
#: per request (thousands of requests) or an unbounded cache crosses it.
RSS_GROWTH_MAX_MIB = 48.0

pytestmark = pytest.mark.timeout(300)


def test_short_soak_at_measured_capacity(tmp_path: Path) -> None:
    summary = soak.run(soak.Config(soak_s=SOAK_S, measure_s=5.0, clients=6, seed=1406,
                                   workdir=tmp_path))
    context = json.dumps(summary, indent=1)
    assert summary["capacity_rps"] > 5, context
    assert summary["requests"] >= 0.3 * summary["capacity_rps"] * SOAK_S, context
    assert summary["writes"] > 0, context
    assert summary["reads"] > 0, context
    assert summary["status_5xx"] == 0, context
    assert summary["transport_errors"] == 0, context
    assert summary["other_non_2xx"] == {}, context
    assert summary["rss_growth_mib"] < RSS_GROWTH_MAX_MIB, context
    assert summary["rss_max_mib"] < summary["rss_start_mib"] + RSS_GROWTH_MAX_MIB, context
    assert summary["latency_p99_ms"] > 0, context
    assert summary["lost"] == 0, context
    assert summary["duplicates"] == 0, context
    assert summary["acknowledged"] > 0, context
    assert summary["audit_ok"], context
    assert summary["api_server_restarts"] == 0, context
    assert summary["ok"], context
