"""``rho-actors profiles list|show NAME``: what each permission profile allows.

A profile decides what an agent may do, so the listing shows the decisions
side by side, and ``show`` prints every field with a word on what it means:
nobody should have to read YAML to learn that ``developer`` asks before a
write.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import attrs
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._errors import ConfigError
from .._profiles import PermissionProfile, ProfileInfo, list_profiles, load_profile
from ._common import EXIT_OK, one_line

# What each field means, shown next to its value by `profiles show`.
FIELD_HELP = {
    "name": "the name to give --profile",
    "description": "what the profile is for",
    "shell": "restricted: allowlist only · unrestricted: any command but the blocklist · off",
    "shell_allowlist": "commands a restricted shell may run (every part of a pipeline is checked)",
    "shell_blocklist": "commands refused in every shell mode",
    "file_write": "off · create-only (new files) · full",
    "database": "readonly · mutations",
    "approval": "which calls wait for a human: none · all · dangerous · granular",
    "approval_tools": "the tools that wait for approval under 'granular'",
    "confine_to_working_dir": "file tools stay inside the working directory",
    "sandbox": "run the shell in bubblewrap: required · preferred · off",
    "network": "whether the sandboxed shell has network access",
    "max_output_chars": "tool output beyond this is cut (head and tail kept)",
    "bash_timeout": "seconds a shell command may run",
    "tools": "the tools offered (all: every built-in the modes allow)",
}

SUMMARY_FIELDS = (
    "shell",
    "file_write",
    "database",
    "approval",
    "confine_to_working_dir",
    "sandbox",
    "network",
)


def list_main(args: argparse.Namespace) -> int:
    """Profiles side by side, one column each: comparing them is the point."""
    infos = list_profiles()
    table = Table(
        title="permission profiles",
        title_justify="left",
        caption="`rho-actors profiles show NAME` explains every field",
    )
    table.add_column("", style="bold", no_wrap=True)
    for info in infos:
        table.add_column(info.name, no_wrap=True)
    headings = ["source", *(_HEADINGS.get(f, f) for f in SUMMARY_FIELDS)]
    rows: list[list[str | Text]] = [[heading] for heading in headings]
    for info in infos:
        for row, value in zip(rows, _summary_column(info), strict=True):
            row.append(value)
    for row in rows:
        table.add_row(*row)
    # Piped, a table keeps a width that fits it rather than 80 columns.
    Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(table)
    return EXIT_OK


_HEADINGS = {"file_write": "file writes", "confine_to_working_dir": "confined to dir"}


def _summary_column(info: ProfileInfo) -> list[str | Text]:
    try:
        profile = load_profile(info.name if info.path is None else info.path)
    except ConfigError as exc:
        # One broken file must not hide the others.
        invalid = Text(one_line(f"invalid: {exc}", 40), style="red")
        return [info.source, invalid, *[""] * (len(SUMMARY_FIELDS) - 1)]
    return [info.source, *(_value(getattr(profile, f)) for f in SUMMARY_FIELDS)]


def show_main(args: argparse.Namespace) -> int:
    profile = load_profile(args.name)
    source = next((p for p in list_profiles() if p.name == args.name), None)
    where = f" ({source.source}: {source.path})" if source and source.path else ""
    Console(highlight=False).print(profile_table(profile, title=f"profile {profile.name}{where}"))
    return EXIT_OK


def profile_table(profile: PermissionProfile, *, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("field", no_wrap=True, style="bold")
    table.add_column("value")
    table.add_column("meaning", style="dim")
    for field in attrs.fields(PermissionProfile):
        value = getattr(profile, field.name)
        table.add_row(field.name, _value(value, field.name), FIELD_HELP.get(field.name, ""))
    return table


def _value(value: Any, name: str = "") -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "all" if name == "tools" else "-"
    if isinstance(value, tuple | frozenset | list):
        return ", ".join(sorted(value)) if value else "(none)"
    return str(value)
