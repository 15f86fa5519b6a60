"""Keep the README true: every table of figures names the command that prints them.

A table holds figures when a cell has a measured-looking number: a decimal, a dollar amount,
a percentage, a rate (/s, /min) or a time in ms. Such a table must be preceded, within a
few lines (or headed, or each row led) by a command: a ``benchmarks/*.py`` script or a
``radstream`` command. Each named command must still exist with the options it is shown
with (the script's argparse flags, the CLI's options), so the line can be run again to
check the figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import typer.main

from radstream.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LOOK_BACK = 12
FIGURE = re.compile(
    r"\$\d|\d\.\d|\d\s?%|\d\s?ms\b|\d/s\b|\d/min\b|\d+\s?(MB|GB)\b|\*\*\d",
)
SCRIPT = re.compile(r"benchmarks/[\w-]+\.py[^`\n]*")
CLI_LINE = re.compile(r"radstream\s+[a-z][^`\n]*")


@dataclass(frozen=True)
class Table:
    """A Markdown table: its first line number (from 1) and its lines."""

    line: int
    rows: list[str]

    @property
    def header(self) -> str:
        return self.rows[0]

    @property
    def body(self) -> list[str]:
        return self.rows[2:]


def tables(markdown: str) -> tuple[list[str], list[Table]]:
    """The README's lines and its tables (outside code fences)."""
    lines = markdown.splitlines()
    found: list[Table] = []
    fenced = False
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            fenced = not fenced
        elif not fenced and lines[i].startswith("|"):
            start = i
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
            found.append(Table(start + 1, lines[start:i]))
            continue
        i += 1
    return lines, found


def has_figures(table: Table) -> bool:
    return any(FIGURE.search(row) for row in table.body)


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def commands_for(lines: list[str], table: Table) -> list[str]:
    """Commands that back ``table``: in the lines before it, its header, or every row's
    first cell (``bench --studies 60 …`` rows mean ``radstream bench …``)."""
    before = "\n".join(lines[max(0, table.line - 1 - LOOK_BACK) : table.line - 1])
    text = before + "\n" + table.header
    found = [m.group(0).strip() for m in SCRIPT.finditer(text)]
    found += [m.group(0).strip() for m in CLI_LINE.finditer(text)]
    first = [_cells(row)[0].strip("`") for row in table.body]
    if first and all(_resolve(f"radstream {cell}") is not None for cell in first):
        found += [f"radstream {cell}" for cell in first]
    return found


def _options(tokens: list[str]) -> list[str]:
    return [t.strip("[]").split("=")[0] for t in tokens if t.strip("[]").startswith("--")]


def _resolve(command: str) -> Any:
    """The CLI command a ``radstream …`` line runs, or None if it names none."""
    tokens = command.split()[1:]
    current: Any = typer.main.get_command(app)
    depth = 0
    for token in tokens:
        if not hasattr(current, "list_commands"):  # a group (typer's own, not click's)
            break
        sub = current.get_command(click.Context(current), token)
        if sub is None:
            break
        current, depth = sub, depth + 1
    return current if depth else None


def problems_with(command: str) -> list[str]:
    """Why ``command`` could not be run as shown (empty: it can)."""
    tokens = command.split()
    if command.startswith("benchmarks/"):
        script = ROOT / tokens[0]
        if not script.is_file():
            return [f"{tokens[0]} does not exist"]
        source = script.read_text(encoding="utf-8")
        return [f"{tokens[0]} has no {o}" for o in _options(tokens) if f'"{o}"' not in source]
    resolved = _resolve(command)
    if resolved is None:
        return [f"`{command}` names no radstream command"]
    known = {opt for p in resolved.params for opt in (*p.opts, *p.secondary_opts)}
    return [f"`{command}`: no option {o}" for o in _options(tokens) if o not in known]


def test_every_table_of_figures_names_a_command_that_still_runs() -> None:
    lines, found = tables(README.read_text(encoding="utf-8"))
    figures = [t for t in found if has_figures(t)]
    assert len(figures) >= 5, "fewer tables of figures than README has: the parser broke"
    unnamed = [f"line {t.line}: {t.header}" for t in figures if not commands_for(lines, t)]
    assert not unnamed, f"tables of figures with no command before them: {unnamed}"
    broken = [
        f"line {t.line}: {problem}"
        for t in figures
        for command in commands_for(lines, t)
        for problem in problems_with(command)
    ]
    assert not broken, broken


def test_the_check_tells_a_backed_table_from_an_unbacked_one() -> None:
    backed = (
        "Run `.venv/bin/python benchmarks/serving.py`:\n\n"
        "| concurrency | rate |\n|---|---|\n| 1 | 17.2/s |\n"
    )
    unbacked = "Measured once:\n\n| concurrency | rate |\n|---|---|\n| 1 | 17.2/s |\n"
    stale = "`radstream bench --no-such-flag`\n\n| a | b |\n|---|---|\n| 1 | 2.5 ms |\n"
    reference = "Codes:\n\n| code | retried |\n|---|---|\n| `X` | no |\n"
    for text, named in ((backed, True), (unbacked, False), (stale, True)):
        lines, [table] = tables(text)
        assert has_figures(table)
        assert bool(commands_for(lines, table)) is named
    lines, [table] = tables(stale)
    assert problems_with(commands_for(lines, table)[0]) != []
    assert not has_figures(tables(reference)[1][0])
    assert problems_with("benchmarks/serving.py") == []
    assert problems_with("radstream bench --studies 20 --rate 5 --json") == []
