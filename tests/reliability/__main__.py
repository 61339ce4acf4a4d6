"""``python -m tests.reliability crash --cycles N --backend sqlite|postgres --via
embedded|api [--seed S] [--json]``: the crash campaign (see :mod:`.campaign`).

Progress goes to stderr, one line per cycle; the summary (JSON) to stdout. Exit 0 when
no acknowledged event was lost, every audit passed and every next append worked.
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
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.rotate < 1 or args.writers < 1:
        parser.error("--cycles, --rotate and --writers must be positive")
    from tests.reliability.campaign import main_crash

    return main_crash(args)


if __name__ == "__main__":
    sys.exit(main())
