"""The ``custody`` console script.

``custody --help`` and a bare ``custody`` show the root help from :mod:`cli.root_help`
without importing typer (whose help rendering alone costs several times an interpreter
start); a bare ``custody`` then exits 2, as a usage error, like any group of commands
given no command. Everything else is :func:`cli.main.run`.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    args = sys.argv[1:]
    if not args or args == ["--help"]:
        from cli.root_help import show

        try:
            show()
            if sys.stdout is not None:  # None: started with standard output closed
                sys.stdout.flush()
        except BrokenPipeError:  # `custody --help | head -1`: the reader has gone; end
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # quietly, as
            sys.exit(1)  # any other command whose output is cut short does
        sys.exit(2 if not args else 0)
    from cli.main import entry

    entry()


if __name__ == "__main__":
    main()
