"""A command group that imports a command's module only when the command is used.

Typer builds the whole click tree when the app is called, which imports every command
module and, through them, SQLAlchemy, pydantic, the court report and the rest, even for
``custody --help``. :class:`LazyGroup` holds a table of :class:`Lazy` entries instead
(name and ``module:attribute``) and builds one command, the one the command line names,
exactly as ``app.command()(function)`` or ``app.add_typer(sub_app, name=...)`` would
have built it, so its options, help and behaviour are the same.

The root ``--help`` lists every command with the first paragraph of its help; that
text comes from :data:`cli.help_index.SUMMARIES` (generated from the commands
themselves: ``python -m cli.lazy`` rewrites it, and ``tests/cli/test_startup_imports.py``
fails when it is stale), so listing commands imports none of them. ``group.commands``
still behaves as the full mapping (iterating its items loads every command), so code
that walks the tree sees all of it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

try:  # typer >= 0.20 vendors its own click (and does not install the click package)
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer depends on click itself
    import click  # type: ignore[no-redef]


@dataclass(frozen=True)
class Lazy:
    """A command (a function) or a group of commands (a ``typer.Typer``) registered by
    name, loaded from ``target`` (``"package.module:attribute"``) when first needed."""

    name: str
    target: str

    def load(self) -> Any:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


class _Commands(MutableMapping[str, click.Command]):
    """The group's commands by name, in table order; a command is built on first access."""

    def __init__(self, group: LazyGroup, table: tuple[Lazy, ...],
                 given: Mapping[str, click.Command]) -> None:
        self._group = group
        self._table = {entry.name: entry for entry in table}
        self._order = list(self._table)
        self._built: dict[str, click.Command] = {}
        for name, command in given.items():
            self[name] = command

    def built(self, name: str) -> bool:
        return name in self._built

    def __getitem__(self, name: str) -> click.Command:
        command = self._built.get(name)
        if command is None:
            entry = self._table.get(name)
            if entry is None:
                raise KeyError(name)
            command = self._built[name] = self._group.build(entry)
        return command

    def __setitem__(self, name: str, command: click.Command) -> None:
        if name not in self._table and name not in self._built:
            self._order.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._table and name not in self._built:
            raise KeyError(name)
        self._table.pop(name, None)
        self._built.pop(name, None)
        self._order.remove(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._table or name in self._built


class LazyGroup(TyperGroup):
    """A Typer group whose commands come from :attr:`table` (set by a subclass), built
    on demand. :attr:`summaries` gives the one-paragraph help the command listing shows
    for a command not built yet."""

    table: ClassVar[tuple[Lazy, ...]] = ()
    summaries: ClassVar[Mapping[str, str]] = {}
    #: As the root ``typer.Typer``'s own setting (passed on to every command built).
    pretty_exceptions_short: ClassVar[bool] = True

    def __init__(self, *, commands: Mapping[str, click.Command] | None = None,
                 **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands(self, self.table, dict(commands or {}))
        self._listing = False

    def build(self, entry: Lazy) -> click.Command:
        """The click command for ``entry``, built as registering it on the root app with
        ``app.command()`` (a function) or ``app.add_typer(..., name=...)`` would."""
        target = entry.load()
        holder = typer.Typer()
        command: click.Command
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=entry.name)
            command = typer.main.get_group_from_info(
                holder.registered_groups[0],
                pretty_exceptions_short=self.pretty_exceptions_short,
                rich_markup_mode=self.rich_markup_mode,
                suggest_commands=self.suggest_commands)
        else:
            holder.command(entry.name)(target)
            command = typer.main.get_command_from_info(
                holder.registered_commands[0],
                pretty_exceptions_short=self.pretty_exceptions_short,
                rich_markup_mode=self.rich_markup_mode)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # names only: nothing is built

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        commands = self.commands
        assert isinstance(commands, _Commands)  # noqa: S101
        if self._listing and not commands.built(cmd_name) and cmd_name in self.summaries:
            return self._summary(cmd_name)
        return commands.get(cmd_name)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The help, whose command listing shows each command's summary without
        building (and so importing) the commands."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def _summary(self, name: str) -> click.Command:
        """A stand-in that only names a command and carries its summary, for listing."""
        return TyperCommand(name=name, short_help=self.summaries[name], callback=None,
                            rich_markup_mode=self.rich_markup_mode)


class _Deferred:
    """Typer's coercion of one parameter's value, built only for a value that is given.

    Typer (0.2x) coerces every option value through a pydantic ``TypeAdapter`` that it
    builds the first time the parameter is processed, even when the option was not given
    and its value is None, so ``custody status --help`` imported pydantic (about 0.1 s)
    to process ``--home`` and ``--server`` that nobody passed. For None this does what
    typer's own ``RuntimeParam.coerce`` does before any adapter is involved (``()`` for a
    multi-value parameter, else None); any other value goes to typer's runtime parameter,
    built as typer builds it, so given values are coerced and refused exactly as before."""

    __slots__ = ("_real",)

    def __init__(self) -> None:
        self._real: Any = None

    def coerce(self, value: Any, param: Any, ctx: click.Context) -> Any:
        if value is None:
            return () if param.multiple or param.nargs == -1 else None
        if isinstance(value, str) and not (param.multiple or param.nargs != 1):
            plain = _PLAIN.get(param.type_descriptor.annotation)
            if plain is not None and _unconstrained(param.type_descriptor):
                return plain(value)
        if self._real is None:
            from typer._coercion import build_runtime_param

            self._real = build_runtime_param(param.type_descriptor)
        return self._real.coerce(value, param=param, ctx=ctx)


#: Option types whose value typer's pydantic coercion only converts (no check can fail):
#: a ``str`` is kept, a ``Path`` is ``Path(value)``. Taking them directly spares every
#: command given ``--home DIR`` (or ``CUSTODY_HOME``) the import of pydantic; the tests
#: compare the results with typer's own coercion (``tests/cli/test_startup_imports.py``).
_PLAIN: dict[Any, Any] = {str: str, Path: Path}

#: The typer parameter settings under which that holds: anything else (a path that must
#: exist, be a file, be resolved, allow ``-``; a custom parser; a file type) goes to typer.
_UNCONSTRAINED = {"parser": None, "exists": False, "file_okay": True, "dir_okay": True,
                  "writable": False, "readable": True, "resolve_path": False,
                  "allow_dash": False, "path_type": None}


def _unconstrained(descriptor: Any) -> bool:
    info = descriptor.parameter_info
    return descriptor.file_annotation is None and all(
        getattr(info, name, None) == value for name, value in _UNCONSTRAINED.items())


def install_deferred_coercion() -> None:
    """Make typer build a parameter's coercion (:class:`_Deferred`) only for a value that
    is given. Installed once, on import of this module, like the help style of
    :mod:`cli.options`; a typer without this mechanism is left as it is."""
    from typer import core

    cls = getattr(core, "_TyperParameter", None)
    if cls is None or not hasattr(cls, "get_runtime_param"):  # pragma: no cover
        return

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            self._runtime_param = _Deferred()
        return self._runtime_param

    cls.get_runtime_param = get_runtime_param


def summaries_of(group: click.Command) -> dict[str, str]:
    """The help summary of each command of ``group`` (built): the first paragraph of its
    help, as the command listing shows it."""
    import inspect

    out: dict[str, str] = {}
    for name, command in getattr(group, "commands", {}).items():
        text = inspect.cleandoc(command.short_help or command.help or "").partition("\f")[0]
        out[name] = text.split("\n\n")[0].replace("\n", " ").strip()
    return out


#: Markdown syntax that would make typer's rendering of a help paragraph differ from
#: :mod:`cli.root_help`'s plain one.
_MARKDOWN = ("*", "_", "`", "<", ">", "[", "]", "\\", "#", "  ", "\n")


def _plain(text: str) -> str:
    """``text``, refused when markdown would render it differently from plain text."""
    if any(mark in text for mark in _MARKDOWN) or text[:1] in "-+" \
            or text.split(" ", 1)[0].rstrip(".)").isdigit():
        raise ValueError(f"root help text with markdown syntax (cli.root_help shows it "
                         f"plain): {text!r}")
    return text


def root_help_of(group: TyperGroup) -> tuple[
        str, str, list[tuple[str, str, str, tuple[tuple[str, str], ...]]]]:
    """What ``custody --help`` shows besides the command summaries: the usage line, the
    help paragraph and each option (name, value, help, extra lines such as ``[env var:
    …]`` with their style), as typer's own rendering computes them. Raises ValueError for
    a shape :mod:`cli.root_help` does not lay out (short or secondary option names,
    required options, help panels, several paragraphs, markdown syntax)."""
    import inspect

    from rich.markdown import Markdown
    from rich.text import Text
    from typer import rich_utils
    from typer.core import TyperOption

    ctx = group.make_context("custody", ["--help"], resilient_parsing=True)
    text = inspect.cleandoc(group.help or "").partition("\f")[0]
    options = []
    for param in group.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        if not isinstance(param, TyperOption) or param.secondary_opts or param.required \
                or len(param.opts) != 1 or not param.opts[0].startswith("--") \
                or getattr(param, "rich_help_panel", None) \
                or param._get_number_range_help_str():
            raise ValueError(f"a root option cli.root_help cannot lay out: {param.opts}")
        cell = rich_utils._get_parameter_help(param=param, ctx=ctx, markup_mode="markdown")
        first, *rest = cell.renderables
        if not isinstance(first, Markdown) or not all(isinstance(i, Text) for i in rest):
            raise ValueError(f"a root option's help cli.root_help cannot lay out: {param.opts}")
        extras = tuple((item.plain, str(item.style)) for item in rest if isinstance(item, Text))
        options.append((param.opts[0], param.display_type_rich(ctx=ctx) or "",
                        _plain(first.markup), extras))
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden or command.deprecated \
                or getattr(command, "rich_help_panel", None):
            raise ValueError(f"a command cli.root_help cannot list: {name}")
    return group.get_usage(ctx), _plain(text), options


def write_index(path: str | None = None) -> str:
    """Regenerate :mod:`cli.help_index` from the commands themselves."""
    import json
    from pathlib import Path

    from cli.main import app

    def quoted(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)  # a valid Python string literal

    def wrapped(text: str, indent: str, end: str) -> list[str]:
        out, line = [], ""
        for word in text.split(" "):
            piece = word if not line else f"{line} {word}"
            if len(quoted(piece)) > 94 - len(indent) and line:
                out.append(f"{indent}{quoted(line + ' ')}")
                line = word
            else:
                line = piece
        return [*out, f"{indent}{quoted(line)}{end}"]

    group = typer.main.get_command(app)
    summaries = summaries_of(group)
    assert isinstance(group, TyperGroup)  # noqa: S101 - the root app is a group
    usage, text, options = root_help_of(group)
    for summary in summaries.values():
        _plain(summary)
    lines = ['"""Generated by ``python -m cli.lazy`` from the commands\' own help: the summary '
             "the\ncommand listing of ``custody --help`` shows for each command, so that "
             "listing imports none,\nand the rest of the root help (:mod:`cli.root_help`)."
             '\n\nDo not edit by hand."""', "",
             "SUMMARIES: dict[str, str] = {"]
    for name, summary in summaries.items():
        lines.append(f"    {quoted(name)}: (")
        lines += wrapped(summary, " " * 8, "),")
    lines += ["}", "", f"ROOT_USAGE = {quoted(usage)}", "ROOT_HELP = ("]
    lines += wrapped(text, " " * 4, ")")
    lines += ["", "#: (option, value shown, help, extra lines as (text, Rich style)), in order.",
              "ROOT_OPTIONS: tuple[tuple[str, str, str, tuple[tuple[str, str], ...]], ...] = ("]
    for name, shown, help_text, extras in options:
        lines.append(f"    ({quoted(name)}, {quoted(shown)},")
        lines += wrapped(help_text, " " * 5, ",")
        lines.append("     " + "(" + "".join(
            f"({quoted(t)}, {quoted(style)}), " for t, style in extras).rstrip(" ") + ")),")
    lines.append(")")
    text = "\n".join(lines) + "\n"
    target = Path(path) if path else Path(__file__).with_name("help_index.py")
    target.write_text(text)
    return text


install_deferred_coercion()

if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    write_index()
