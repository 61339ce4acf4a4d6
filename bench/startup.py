"""CLI start-up: how long ``custody`` takes before and while doing a small job, as a ratio
to a bare interpreter start measured in the same run (issue #13, targets ``--help`` ≤ 5×
and ``status`` ≤ 8×).

Figures (hyperfine-like: one warm-up round, then ``runs`` rounds in which every command
runs once, interleaved, so a burst of load on the shared machine hits all of them alike;
the median of the rounds):

* ``python_c_pass`` — ``python -c pass`` with the project's interpreter and
  site-packages: the reference (1.0×).
* ``help`` — ``custody --help``: the root help, listing every command.
* ``status_help`` / ``verify_help`` — ``custody status --help``, ``custody verify --help``.
* ``status`` — ``custody --home DIR status`` on a small ledger (``custody demo
  --size-mib 1``: about 20 entries).
* ``verify`` — ``custody --home DIR verify FILE`` on that ledger's 1 MiB disk image
  (hashing, proofs from the store, the checkpoint check).

Each figure gives ``wall_ms`` (median wall-clock time) and ``cpu_ms`` (median user +
system CPU time of the child): CPU time is what the process itself spends, and is far
less disturbed than wall time by other work on a busy 2-core machine. ``ratio`` and
``cpu_ratio`` divide them by the reference's. ``custody`` is the console script of this
interpreter (``custody`` beside ``sys.executable``), run exactly as a user runs it.

Standalone: ``python -m bench.startup [--runs N] [--quick] [--source DIR]``; ``--source``
runs the code of another checkout (e.g. ``git archive HEAD``) on ``PYTHONPATH``, with the
same interpreter and packages, for before/after tables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: The targets of issue #13 (ratio to a bare interpreter start).
TARGETS = {"help": 5.0, "status": 8.0}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def custody_command() -> list[str]:
    """How a user starts ``custody``: the console script next to this interpreter (run by
    this interpreter, as its shebang would), else ``python -m cli.main``."""
    script = Path(sys.executable).with_name("custody")
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "cli.main"]


def _environment(source: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CUSTODY_") and k not in ("PYTHONPATH", "COLUMNS")}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def _timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """Run ``argv`` once in ``cwd``: (wall seconds, child CPU seconds, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    code = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, code


def small_ledger(folder: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """A demo ledger (1 MiB disk image) in ``folder``: (home, evidence file)."""
    home = folder / "home"
    proc = subprocess.run([*custody_command(), "demo", "--size-mib", "1", "--home", str(home),
                           "--json"], env=env, cwd=folder, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"custody demo failed ({proc.returncode}): {proc.stderr[-2000:]}")
    evidence = home / "evidence" / "disk01.E01"
    with contextlib.suppress(ValueError, KeyError, IndexError):
        evidence = Path(json.loads(proc.stdout.strip().splitlines()[-1])["evidence"])
    return home, evidence


def measure(runs: int, source: Path | None = None) -> dict[str, Any]:
    env = _environment(source)
    custody = custody_command()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        _log("startup: building a small ledger (custody demo --size-mib 1) ...")
        home, evidence = small_ledger(Path(tmp), env)
        commands = {
            "python_c_pass": [sys.executable, "-c", "pass"],
            "help": [*custody, "--help"],
            "status_help": [*custody, "status", "--help"],
            "verify_help": [*custody, "verify", "--help"],
            "status": [*custody, "--home", str(home), "status"],
            "verify": [*custody, "--home", str(home), "verify", str(evidence)],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for round_ in range(runs + 1):  # round 0 warms the page cache and .pyc files
            for name, argv in commands.items():
                wall, cpu, code = _timed(argv, env, Path(tmp))
                if code != 0:
                    raise RuntimeError(f"{' '.join(argv)} exited {code}")
                if round_:
                    walls[name].append(wall)
                    cpus[name].append(cpu)
            if round_:
                _log(f"startup: round {round_}/{runs} done")
    ref_wall = statistics.median(walls["python_c_pass"])
    ref_cpu = statistics.median(cpus["python_c_pass"])
    figures: dict[str, Any] = {}
    for name in commands:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        figures[name] = {"wall_ms": round(wall * 1000, 1), "min_wall_ms":
                         round(min(walls[name]) * 1000, 1), "cpu_ms": round(cpu * 1000, 1),
                         "ratio": round(wall / ref_wall, 2), "cpu_ratio": round(cpu / ref_cpu, 2)}
        if name in TARGETS:
            figures[name]["target_ratio"] = TARGETS[name]
    return {
        "reference": "python_c_pass (bare interpreter start, same interpreter and packages)",
        "runs": runs,
        "statistic": "median of interleaved rounds; wall clock and child user+sys CPU",
        "source": str(source) if source is not None else "this checkout",
        "figures": figures,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def run(quick: bool) -> dict[str, Any]:
    return measure(3 if quick else 15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--source", type=Path, help="run the code of this checkout instead")
    args = parser.parse_args(argv)
    if args.source is not None and not (args.source / "cli" / "main.py").is_file():
        parser.error(f"{args.source} holds no cli/main.py")
    result = measure(3 if args.quick else args.runs, args.source)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
