"""``python -m tests.reliability crash --cycles N --backend sqlite|postgres --via
embedded|api [--seed S] [--json]``: the crash campaign (see :mod:`.campaign`).

``python -m tests.reliability outage --cycles N``: PostgreSQL stopped and restarted under
write load through the API (:mod:`.outage`). ``python -m tests.reliability soak
--minutes M``: the API at its measured capacity (:mod:`.soak`).

Progress goes to stderr; the summary (JSON) to stdout. Exit 0 when every target was met
(no acknowledged event lost, every audit passed, no 5xx but the expected 503s, ...).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# The writers are forked; gRPC (imported by optional modules) must not abort them.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability",
                                     description="Reliability campaigns (issue #14).")
    sub = parser.add_subparsers(dest="command", required=True)
    crash = sub.add_parser("crash", help="SIGKILL writers (and servers) at random points, "
                           "then check every acknowledged event, audit, append again")
    crash.add_argument("--cycles", type=int, required=True)
    crash.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    crash.add_argument("--via", choices=("embedded", "api"), default="embedded")
    crash.add_argument("--seed", type=int, default=14)
    crash.add_argument("--rotate", type=int, default=10,
                       help="a fresh ledger every this many cycles (default 10)")
    crash.add_argument("--writers", type=int, default=4,
                       help="writer processes per cycle (default 4: one of each kind)")
    crash.add_argument("--window", type=float, default=0.35,
                       help="kills land within 0..W seconds after the first ack (max W)")
    crash.add_argument("--server-kill-rate", type=float, default=0.3,
                       help="PostgreSQL: share of cycles that SIGKILL the server too")
    crash.add_argument("--lying-writer", action="store_true",
                       help="self-test: a writer that acknowledges BEFORE it commits; the "
                       "campaign must then report lost events (exit 1)")
    crash.add_argument("--workdir", type=Path, default=None)
    crash.add_argument("--keep", action="store_true", help="keep ledgers and journals")
    crash.add_argument("--json", action="store_true", help="the summary as one JSON line")
    crash.add_argument("--quiet", action="store_true", help="no per-cycle progress")

    outage = sub.add_parser("outage", help="the database goes away: stop (pg_ctl -m fast) "
                            "or SIGKILL PostgreSQL under write load through the API, restart "
                            "it, then check every acknowledged event, duplicates, audit")
    outage.add_argument("--cycles", type=int, required=True)
    outage.add_argument("--writers", type=int, default=4,
                        help="concurrent HTTP writer threads (default 4)")
    outage.add_argument("--up", type=float, default=1.0,
                        help="seconds of writing with PostgreSQL up before each stop")
    outage.add_argument("--down", type=float, nargs=2, default=(1.0, 3.0),
                        metavar=("MIN", "MAX"),
                        help="seconds PostgreSQL stays down, drawn in [MIN, MAX]")
    outage.add_argument("--modes", default="fast,kill",
                        help="how PostgreSQL is stopped, in turn: fast, smart, immediate, "
                        "kill (SIGKILL); default fast,kill")
    outage.add_argument("--seed", type=int, default=14)
    outage.add_argument("--audit-every", type=int, default=10,
                        help="a full check and audit every this many cycles (and at the end)")
    outage.add_argument("--workdir", type=Path, default=None)
    outage.add_argument("--keep", action="store_true")
    outage.add_argument("--json", action="store_true", help="the summary as one JSON line")
    outage.add_argument("--quiet", action="store_true", help="no per-cycle progress")

    soak = sub.add_parser("soak", help="drive the API at its measured capacity (loopback "
                          "only) with writes and reads; report 5xx, RSS, p50/p99")
    soak.add_argument("--minutes", type=float, required=True)
    soak.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    soak.add_argument("--clients", type=int, default=8,
                      help="concurrent HTTP client threads (default 8)")
    soak.add_argument("--write-share", type=float, default=0.5,
                      help="share of requests that are writes (default 0.5)")
    soak.add_argument("--measure", type=float, default=20.0,
                      help="seconds of the capacity measurement before the soak")
    soak.add_argument("--rate", type=float, default=None,
                      help="requests per second to hold (default: the measured capacity)")
    soak.add_argument("--artefacts", type=int, default=32,
                      help="accesses and reads spread over this many artefacts (default 32)")
    soak.add_argument("--seed", type=int, default=14)
    soak.add_argument("--workdir", type=Path, default=None)
    soak.add_argument("--json", action="store_true", help="the summary as one JSON line")
    soak.add_argument("--quiet", action="store_true", help="no progress lines")

    args = parser.parse_args(argv)
    if args.command == "outage":
        if args.cycles < 1 or args.writers < 1 or not 0 <= args.down[0] <= args.down[1]:
            parser.error("--cycles and --writers must be positive, --down MIN <= MAX")
        if not set(args.modes.split(",")) <= {"fast", "smart", "immediate", "kill"}:
            parser.error("--modes takes fast, smart, immediate and kill")
        from tests.reliability.outage import main_outage

        return main_outage(args)
    if args.command == "soak":
        if args.minutes <= 0 or args.clients < 1 or args.artefacts < 1 \
                or not 0 <= args.write_share <= 1:
            parser.error("--minutes, --clients and --artefacts must be positive, "
                         "--write-share in [0, 1]")
        from tests.reliability.soak import main_soak

        return main_soak(args)
    if args.cycles < 1 or args.rotate < 1 or args.writers < 1:
        parser.error("--cycles, --rotate and --writers must be positive")
    from tests.reliability.campaign import main_crash

    return main_crash(args)


if __name__ == "__main__":
    sys.exit(main())
