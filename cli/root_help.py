"""``custody --help`` (and a bare ``custody``) without importing typer or the commands.

Typer renders help through ``typer.rich_utils``, whose import alone (Rich's markdown,
traceback and pretty-printing machinery) costs four to five times a bare interpreter
start; a forensic lab's scripts and a user's first look at the tool paid it on every
``custody --help``. The root help has a fixed shape: a usage line, one paragraph, the
global options and the command list. :data:`cli.help_index.ROOT` holds its text,
generated from the typer app itself (``python -m cli.lazy``), and :func:`show` lays it
out with Rich's console, panel and table only, in the same layout, styles and colours
as typer's (``tests/cli/test_root_help.py`` compares the two outputs byte for byte,
with and without colour, at several widths; a change of typer's layout fails there).

Every other help (``custody COMMAND --help``) is typer's own.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

#: The environment typer reads when it creates its help console (``typer.rich_utils``).
_FORCE = ("GITHUB_ACTIONS", "FORCE_COLOR", "PY_COLORS")


def _console() -> Any:
    from rich.console import Console
    from rich.highlighter import RegexHighlighter
    from rich.theme import Theme

    class Options(RegexHighlighter):
        highlights: ClassVar[list[str]] = [r"(^|\W)(?P<switch>\-\w+)(?![a-zA-Z0-9])",
                      r"(^|\W)(?P<option>\-\-[\w\-]+)(?![a-zA-Z0-9])",
                      r"(?P<types>\<[^\>]+\>)", r"(?P<usage>Usage: )"]

    force: bool | None = True if any(os.getenv(name) for name in _FORCE) else None
    if os.getenv("_TYPER_FORCE_DISABLE_TERMINAL"):
        force = False
    width = os.getenv("TERMINAL_WIDTH")
    theme = Theme({"option": "bold cyan", "switch": "bold green",
                   "negative_option": "bold magenta", "negative_switch": "bold red",
                   "types": "bold yellow", "types_sep": "dim", "usage": "yellow"})
    return Console(theme=theme, highlighter=Options(), color_system="auto",
                   force_terminal=force, width=int(width) if width else None)


def show() -> None:
    """Print the root help to standard output."""
    from rich.align import Align
    from rich.columns import Columns
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from cli.help_index import ROOT_HELP, ROOT_OPTIONS, ROOT_USAGE, SUMMARIES

    console = _console()
    highlight = console.highlighter
    console.print(Padding(highlight(ROOT_USAGE), 1), style="bold")
    console.print(Padding(Align(_Block(ROOT_HELP), pad=False), (0, 1, 1, 1)))

    options = Table(highlight=True, show_header=False, expand=True, box=None,
                    show_lines=False, leading=0, pad_edge=False, padding=(0, 1))
    types = _types_highlighter()
    for long, metavar, text, extras in ROOT_OPTIONS:
        cell: list[Any] = [_Block(text), *(Text(extra, style=style) for extra, style in extras)]
        options.add_row(highlight(long), highlight(""), Text(""), Text(""),
                        types(Text(metavar, style="bold yellow", overflow="fold")),
                        Columns(cell))
    console.print(Panel(options, border_style="dim", title="Options", title_align="left"))

    commands = Table(highlight=False, show_header=False, expand=True, box=None,
                     show_lines=False, leading=0, pad_edge=False, padding=(0, 1))
    commands.add_column(style="bold cyan", no_wrap=True, width=max(map(len, SUMMARIES)))
    commands.add_column("Description", justify="left", no_wrap=False, ratio=10)
    for name, summary in SUMMARIES.items():
        commands.add_row(Text(name), _Block(summary))
    console.print(Panel(commands, border_style="dim", title="Commands", title_align="left"))
    console.print()  # typer's help ends with click's echo of its (empty) remaining text


def _types_highlighter() -> Any:
    from rich.highlighter import RegexHighlighter

    class Types(RegexHighlighter):
        highlights: ClassVar[list[str]] = [r"^(?P<types_sep>(\[|<))", r"(?P<types_sep>\|)",
                      r"(?P<types_sep>(\]|>))(\.\.\.)?$"]

    return Types()


class _Block:
    """One paragraph of plain text laid out as typer lays out a help paragraph in its
    markdown mode: as wide as it is given, left-justified with the lines padded, and
    measured as taking any width (a Rich ``Markdown`` block). The paragraphs here have
    no markdown syntax (``python -m cli.lazy`` refuses to generate one that has)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.text import Text

        yield Text(self.text, justify="left", end="")
