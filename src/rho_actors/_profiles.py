"""Permission profiles: what an agent's tools may do.

A profile is plain data: which shell mode, whether files may be written,
whether the database may be changed, which calls wait for a human, whether
paths stay inside the working directory, and whether the shell runs in an OS
sandbox. The tools read it; nothing else decides.

Three profiles are built in:

=============  ==========  ===========  =========  =========  ========  =======  =======
profile        shell       file_write   database   approval   confined  sandbox  network
=============  ==========  ===========  =========  =========  ========  =======  =======
readonly       restricted  off          readonly   none       yes       requir.  no
developer      unrestr.    full         mutations  dangerous  yes       off      yes
unrestricted   unrestr.    full         mutations  none       no        off      yes
=============  ==========  ===========  =========  =========  ========  =======  =======

Custom profiles are YAML files (see :func:`load_profile`); ``extends:`` starts
from another profile and overrides what it names. List fields may be given
as a list (replacing the inherited one) or as ``{add: [...], remove: [...]}``.

The names of the built-in profiles are reserved: a ``profiles/readonly.yaml``
in a checked-out repository cannot turn ``readonly`` into something else,
because resolving a name tries the built-ins first, then the user's config
directory, then the project's ``profiles/`` folder.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import yaml

from ._errors import ConfigError
from ._shell_policy import check_command

__all__ = [
    "BUILTIN_PROFILES",
    "BUILTIN_TOOL_NAMES",
    "DESTRUCTIVE_COMMANDS",
    "READONLY_COMMANDS",
    "SYSTEM_COMMANDS",
    "PermissionProfile",
    "ProfileInfo",
    "list_profiles",
    "load_profile",
    "user_profile_dir",
]

ShellMode = Literal["restricted", "unrestricted", "off"]
FileWriteMode = Literal["off", "create-only", "full"]
DatabaseMode = Literal["readonly", "mutations"]
ApprovalMode = Literal["none", "all", "dangerous", "granular"]
SandboxMode = Literal["required", "preferred", "off"]
ProfileSource = Literal["built-in", "user", "project"]

BUILTIN_TOOL_NAMES = ("read", "grep", "glob", "list", "bash", "write", "edit", "sqlite")

# Commands that only read. Wrappers (env, nice, timeout, xargs, sh -c, ...)
# need not be listed: the policy judges the command they run. `env` and
# `printenv` alone would print the environment (API keys included), so they
# are left out; a profile that wants them can add them. Commands that can
# write through an option (find -delete, sed -i, sort -o, git ...) are checked
# argument by argument (see _command_rules).
_READ_FILES = ("cat", "head", "tail", "nl", "tac", "rev", "od", "hexdump", "strings", "file")
_LIST_FILES = ("ls", "tree", "find", "stat", "du", "df", "realpath", "readlink", "basename")
_SEARCH = ("grep", "egrep", "fgrep", "rg", "jq", "diff", "cmp", "comm", "dirname")
_TEXT = ("wc", "sort", "uniq", "cut", "tr", "sed", "awk", "gawk", "mawk", "paste", "column")
_FORMAT = ("fold", "expand", "unexpand", "base64", "echo", "printf", "seq", "expr")
_CHECKSUMS = ("md5sum", "sha1sum", "sha256sum", "sha512sum", "cksum")
_SHELL = ("true", "false", "test", "[", ":", "cd", "pwd", "sleep", "wait", "exit", "which", "type")
_SYSTEM = ("date", "whoami", "id", "uname", "hostname", "nproc", "free", "uptime", "ps", "git")
READONLY_COMMANDS: tuple[str, ...] = (
    *_READ_FILES,
    *_LIST_FILES,
    *_SEARCH,
    *_TEXT,
    *_FORMAT,
    *_CHECKSUMS,
    *_SHELL,
    *_SYSTEM,
)

# Commands that harm the machine rather than the project: refused in every
# profile that keeps the default blocklist, whatever its shell mode.
SYSTEM_COMMANDS: tuple[str, ...] = (
    *("sudo", "su", "doas", "pkexec", "visudo", "passwd", "useradd", "userdel", "usermod"),
    *("dd", "mkfs", "mkfs.*", "mke2fs", "mkswap", "fdisk", "sfdisk", "parted", "wipefs"),
    *("shutdown", "reboot", "halt", "poweroff", "init", "telinit", "mount", "umount"),
    *("swapon", "swapoff", "iptables", "nft"),
)

# Everything that destroys data or changes ownership, on top of SYSTEM_COMMANDS.
DESTRUCTIVE_COMMANDS: tuple[str, ...] = (
    *SYSTEM_COMMANDS,
    *("rm", "rmdir", "shred", "truncate", "chmod", "chown", "chgrp", "chattr", "setfacl"),
    *("kill", "killall", "pkill", "systemctl", "crontab"),
)

# Each mode from the least to the most permissive (sandbox: from the least
# to the most protective).
_SHELL_ORDER: tuple[str, ...] = ("off", "restricted", "unrestricted")
_WRITE_ORDER: tuple[str, ...] = ("off", "create-only", "full")
_DATABASE_ORDER: tuple[str, ...] = ("readonly", "mutations")
_SANDBOX_ORDER: tuple[str, ...] = ("off", "preferred", "required")


def _stricter_approval(
    a: PermissionProfile, b: PermissionProfile
) -> tuple[ApprovalMode, tuple[str, ...]]:
    if a.approval == b.approval:
        return a.approval, tuple(dict.fromkeys((*a.approval_tools, *b.approval_tools)))
    if a.approval == "none":
        return b.approval, b.approval_tools
    if b.approval == "none":
        return a.approval, a.approval_tools
    return "all", ()


def _fewer_tools(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None:
        return b
    if b is None:
        return a
    return a & b


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _choices(tp: Any) -> tuple[str, ...]:
    return typing.get_args(tp)


def _tuple_of_str(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _tool_set(value: Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(value)


@attrs.frozen(kw_only=True, slots=True)
class PermissionProfile:
    """What the tools of an agent may do.

    The defaults are those of ``readonly``: a profile that forgets a field
    errs on the side of doing less.

    ``shell_blocklist`` applies in *every* shell mode, also through wrappers
    (``xargs rm``, ``sh -c 'rm ...'``). In ``unrestricted`` mode it is a guard
    rail against mistakes, not a security boundary: an unrestricted shell can
    always spell a command some other way. ``sandbox`` is what makes
    ``readonly`` hold against a determined model: with bubblewrap the root
    file system is mounted read-only by the kernel, the command has no
    capabilities, no network and a bounded number of processes.
    ``"required"`` (the default) refuses to run a command when no sandbox
    works here; ``"preferred"`` is the explicit opt-in to parser-only mode
    on such machines, where the restricted-shell checker is a filter, not a
    security boundary; ``"off"`` never sandboxes.

    ``approval`` decides which calls wait for a human: ``"none"``; ``"all"``;
    ``"granular"``, the tools named in ``approval_tools``; ``"dangerous"``,
    calls that can change things: every ``write`` and ``edit``, ``bash``
    unless the command passes the read-only allowlist, and ``sqlite`` queries
    that are not plain ``SELECT``s when the database mode allows mutations.
    """

    name: str
    description: str = ""
    shell: ShellMode = attrs.field(
        default="restricted", validator=attrs.validators.in_(_choices(ShellMode))
    )
    shell_allowlist: tuple[str, ...] = attrs.field(
        default=READONLY_COMMANDS, converter=_tuple_of_str
    )
    shell_blocklist: tuple[str, ...] = attrs.field(
        default=DESTRUCTIVE_COMMANDS, converter=_tuple_of_str
    )
    file_write: FileWriteMode = attrs.field(
        default="off", validator=attrs.validators.in_(_choices(FileWriteMode))
    )
    database: DatabaseMode = attrs.field(
        default="readonly", validator=attrs.validators.in_(_choices(DatabaseMode))
    )
    approval: ApprovalMode = attrs.field(
        default="none", validator=attrs.validators.in_(_choices(ApprovalMode))
    )
    approval_tools: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    confine_to_working_dir: bool = True
    sandbox: SandboxMode = attrs.field(
        default="required", validator=attrs.validators.in_(_choices(SandboxMode))
    )
    network: bool = False
    max_output_chars: int = attrs.field(default=30_000, validator=attrs.validators.gt(0))
    bash_timeout: float = attrs.field(default=120.0, validator=attrs.validators.gt(0))
    max_processes: int = attrs.field(default=512, validator=attrs.validators.gt(0))
    """How many processes (threads included) a sandboxed shell command may run
    at once: the kernel's answer to a fork bomb (see ``_sandbox``)."""
    tools: frozenset[str] | None = attrs.field(default=None, converter=_tool_set)

    def restricted_to(self, parent: PermissionProfile) -> PermissionProfile:
        """This profile, narrowed so it is nowhere wider than ``parent``.

        What a delegated child gets: in every dimension (shell, allowlist and
        blocklist, file writes, database, approvals, confinement, sandbox,
        network, tools, output and time limits) the stricter of the two.
        Approvals combine so that a call waits if either profile would make it
        wait (two different non-trivial modes become ``all``).
        """
        shell = min(self.shell, parent.shell, key=_SHELL_ORDER.index)
        allowlist = self.shell_allowlist
        if self.shell == "restricted" and parent.shell == "restricted":
            allowlist = tuple(c for c in self.shell_allowlist if c in parent.shell_allowlist)
        elif parent.shell == "restricted":
            allowlist = parent.shell_allowlist
        approval, approval_tools = _stricter_approval(self, parent)
        narrowed = attrs.evolve(
            self,
            shell=shell,
            shell_allowlist=allowlist,
            shell_blocklist=tuple(dict.fromkeys((*self.shell_blocklist, *parent.shell_blocklist))),
            file_write=min(self.file_write, parent.file_write, key=_WRITE_ORDER.index),
            database=min(self.database, parent.database, key=_DATABASE_ORDER.index),
            approval=approval,
            approval_tools=approval_tools,
            confine_to_working_dir=self.confine_to_working_dir or parent.confine_to_working_dir,
            sandbox=max(self.sandbox, parent.sandbox, key=_SANDBOX_ORDER.index),
            network=self.network and parent.network,
            max_output_chars=min(self.max_output_chars, parent.max_output_chars),
            bash_timeout=min(self.bash_timeout, parent.bash_timeout),
            max_processes=min(self.max_processes, parent.max_processes),
            tools=_fewer_tools(self.tools, parent.tools),
        )
        if narrowed == self:
            return self
        return attrs.evolve(narrowed, name=f"{self.name}-within-{parent.name}")

    def to_mapping(self) -> dict[str, Any]:
        """Every field as plain data: what a session stores, read back exactly by
        :func:`load_profile` (built-in names included)."""
        out: dict[str, Any] = {}
        for field in attrs.fields(PermissionProfile):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, frozenset):
                value = sorted(value)
            out[field.name] = value
        return out

    def allows_tool(self, name: str) -> bool:
        """Whether the tool ``name`` is offered at all under this profile.

        Built-in tools are also gated by their mode (no ``bash`` when the
        shell is off, no ``edit`` without full file writes). Other tools are
        allowed unless ``tools`` lists the enabled ones and omits them.
        """
        if self.tools is not None and name not in self.tools:
            return False
        if name == "bash":
            return self.shell != "off"
        if name == "write":
            return self.file_write != "off"
        if name == "edit":
            return self.file_write == "full"
        return True

    def needs_approval(self, tool_name: str, args: Mapping[str, Any] | None = None) -> bool:
        """Whether this call must wait for an approval decision.

        The answer is per call: under ``"dangerous"`` a ``bash`` call running
        ``ls`` goes ahead while one running ``make install`` waits. Tool
        handlers may require approval on their own as well
        (``ToolHandler.requires_approval``); callers combine the two with *or*.
        """
        args = args or {}
        match self.approval:
            case "none":
                return False
            case "all":
                return True
            case "granular":
                return tool_name in self.approval_tools
            case "dangerous":
                return self._is_dangerous(tool_name, args)
        typing.assert_never(self.approval)

    def _is_dangerous(self, tool_name: str, args: Mapping[str, Any]) -> bool:
        if tool_name in ("write", "edit"):
            return True
        if tool_name == "bash":
            command = args.get("command")
            if not isinstance(command, str):
                return True
            return not check_command(command, _READONLY_CHECK).allowed
        if tool_name == "sqlite":
            if self.database == "readonly" or args.get("operation", "query") != "query":
                return False
            sql = args.get("sql")
            return not (isinstance(sql, str) and _is_plain_select(sql))
        return False


def _is_plain_select(sql: str) -> bool:
    """A single SELECT/VALUES/EXPLAIN statement: cannot change data in SQLite."""
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.DOTALL).strip().rstrip(";")
    if ";" in text:
        return False
    first = text.split(None, 1)[0].upper() if text else ""
    return first in ("SELECT", "VALUES", "EXPLAIN")


def _builtin_profiles() -> dict[str, PermissionProfile]:
    readonly = PermissionProfile(
        name="readonly",
        description="Look, don't touch: read-only shell, no file writes, read-only database.",
    )
    developer = PermissionProfile(
        name="developer",
        description=(
            "Day-to-day development inside the working directory: any shell command except "
            "machine-level ones, file writes and database changes, with approval for "
            "anything that can change things."
        ),
        shell="unrestricted",
        shell_blocklist=SYSTEM_COMMANDS,
        file_write="full",
        database="mutations",
        approval="dangerous",
        confine_to_working_dir=True,
        sandbox="off",
        network=True,
    )
    unrestricted = PermissionProfile(
        name="unrestricted",
        description="Everything allowed, nothing asked. Only for throw-away environments.",
        shell="unrestricted",
        shell_blocklist=(),
        file_write="full",
        database="mutations",
        approval="none",
        confine_to_working_dir=False,
        sandbox="off",
        network=True,
    )
    return {p.name: p for p in (readonly, developer, unrestricted)}


BUILTIN_PROFILES: Mapping[str, PermissionProfile] = _builtin_profiles()

# The yardstick for "does this bash call only read?" under approval="dangerous".
_READONLY_CHECK = BUILTIN_PROFILES["readonly"]

DEFAULT_PROFILE = "developer"


# --- finding profiles ---------------------------------------------------------


def user_profile_dir() -> Path:
    """Where the user's own profiles live.

    ``$RHO_ACTORS_CONFIG_DIR/profiles`` when that variable is set, else
    ``$XDG_CONFIG_HOME/rho-actors/profiles`` (``~/.config/...`` by default).
    Profiles placed directly in ``$RHO_ACTORS_CONFIG_DIR`` are found too.
    """
    return _user_dirs()[0]


def _user_dirs() -> list[Path]:
    configured = os.environ.get("RHO_ACTORS_CONFIG_DIR")
    if configured:
        base = Path(configured).expanduser()
        return [base / "profiles", base]
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return [base / "rho-actors" / "profiles"]


def _search_dirs() -> list[tuple[ProfileSource, Path]]:
    dirs: list[tuple[ProfileSource, Path]] = [("user", d) for d in _user_dirs()]
    dirs.append(("project", Path("profiles")))
    return dirs


@attrs.frozen(kw_only=True, slots=True)
class ProfileInfo:
    """A profile that :func:`load_profile` can find by name, and where it lives."""

    name: str
    source: ProfileSource
    path: Path | None = None


def list_profiles() -> list[ProfileInfo]:
    """The profiles loadable by name, in the order names are resolved.

    A name appears once: the entry :func:`load_profile` would use. Files
    shadowed by an earlier source (or by a built-in) are left out.
    """
    found: dict[str, ProfileInfo] = {
        name: ProfileInfo(name=name, source="built-in") for name in BUILTIN_PROFILES
    }
    for source, directory in _search_dirs():
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.suffix in (".yaml", ".yml") and path.is_file():
                found.setdefault(path.stem, ProfileInfo(name=path.stem, source=source, path=path))
    return list(found.values())


def _find_named(name: str) -> Path | None:
    for _, directory in _search_dirs():
        for suffix in (".yaml", ".yml"):
            candidate = directory / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or os.sep in spec or spec.endswith((".yaml", ".yml"))


def load_profile(
    spec: str | os.PathLike[str] | PermissionProfile | Mapping[str, Any] | None,
) -> PermissionProfile:
    """Resolve a profile from a name, a YAML path, a profile, a mapping, or None.

    ``None`` gives ``developer``: a useful agent that still asks before it
    changes anything. A name is looked up among the built-ins, then as
    ``NAME.yaml`` in :func:`user_profile_dir`, then in ``./profiles/``. A
    path (anything with a slash or a ``.yaml`` suffix) is read as YAML.

    Raises :class:`ConfigError` naming the file, the key and what was
    expected when a profile cannot be found or is malformed.
    """
    if isinstance(spec, PermissionProfile):
        return spec
    if spec is None:
        return BUILTIN_PROFILES[DEFAULT_PROFILE]
    if isinstance(spec, Mapping):
        # A stored profile (``to_mapping``) or an inline one in a config: read
        # as a profile file's fields; a built-in's name is allowed here, since
        # a stored session keeps the exact profile it ran with.
        return _build(
            dict(spec), label="profile", lines={}, path=Path("profile"), chain=(), stored=True
        )
    return _resolve(spec, chain=())


def _resolve(spec: str | os.PathLike[str], *, chain: tuple[str, ...]) -> PermissionProfile:
    if isinstance(spec, str) and not _looks_like_path(spec):
        if spec in BUILTIN_PROFILES:
            return BUILTIN_PROFILES[spec]
        path = _find_named(spec)
        if path is None:
            known = ", ".join(p.name for p in list_profiles())
            raise ConfigError(
                f"no profile named {spec!r}",
                key="profile",
                expected=f"one of {known}, or a path to a YAML file",
            )
        return _load_file(path, chain=chain)
    return _load_file(Path(spec), chain=chain)


_LIST_FIELDS = ("shell_allowlist", "shell_blocklist", "approval_tools")
_ENUM_FIELDS: dict[str, tuple[str, ...]] = {
    "shell": _choices(ShellMode),
    "file_write": _choices(FileWriteMode),
    "database": _choices(DatabaseMode),
    "approval": _choices(ApprovalMode),
    "sandbox": _choices(SandboxMode),
}
_KNOWN_KEYS = (
    "name",
    "extends",
    "description",
    *(f.name for f in attrs.fields(PermissionProfile) if f.name not in ("name", "description")),
)


def _load_file(path: Path, *, chain: tuple[str, ...]) -> PermissionProfile:
    label = str(path)
    key = os.path.realpath(path)
    if key in chain:
        raise ConfigError(
            "profiles extend each other in a cycle",
            file=label,
            key="extends",
            expected="a chain of 'extends' that ends at a built-in profile",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("profile file not found", file=label) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read profile: {exc}", file=label) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" on line {mark.line + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"invalid YAML{where}: {problem}", file=label, expected="a mapping of profile fields"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"got a {type(data).__name__}", file=label, expected="a mapping of profile fields"
        )
    lines = _key_lines(node)
    return _build(data, label=label, lines=lines, path=path, chain=(*chain, key))


def _key_lines(node: yaml.Node | None) -> dict[str, int]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {
        str(k.value): k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)
    }


def _build(
    data: dict[Any, Any],
    *,
    label: str,
    lines: Mapping[str, int],
    path: Path,
    chain: tuple[str, ...],
    stored: bool = False,
) -> PermissionProfile:
    def bad(key: str, value: Any, expected: str) -> ConfigError:
        line = f" on line {lines[key]}" if key in lines else ""
        return ConfigError(f"got {value!r}{line}", file=label, key=key, expected=expected)

    for key in data:
        if key not in _KNOWN_KEYS:
            raise bad(str(key), data[key], "one of " + ", ".join(_KNOWN_KEYS)) from None

    name = data.get("name", path.stem)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise bad("name", name, "letters, digits, '.', '_' or '-'")
    if name in BUILTIN_PROFILES and "name" in data and not stored:
        raise bad("name", name, "a name that is not a built-in profile's")

    base: PermissionProfile
    if "extends" in data:
        parent = data["extends"]
        if not isinstance(parent, str) or not parent:
            raise bad("extends", parent, "the name or path of another profile")
        if _looks_like_path(parent) and not os.path.isabs(parent):
            parent = str(path.parent / parent)
        try:
            base = _resolve(parent, chain=chain)
        except ConfigError as exc:
            if exc.file is not None:
                raise
            # An unknown name: say which file asked for it, and where.
            line = f" on line {lines['extends']}" if "extends" in lines else ""
            raise ConfigError(
                f"no profile named {parent!r}{line}",
                file=label,
                key="extends",
                expected=exc.expected,
            ) from None
    else:
        base = BUILTIN_PROFILES["readonly"]

    changes: dict[str, Any] = {"name": name, "description": base.description}
    for key, value in data.items():
        if key in ("name", "extends"):
            continue
        if key == "description":
            if not isinstance(value, str):
                raise bad(key, value, "a string")
            changes[key] = value
        elif key in _ENUM_FIELDS:
            if value is False and "off" in _ENUM_FIELDS[key]:
                value = "off"  # YAML 1.1 reads an unquoted `off`/`no` as false
            if value not in _ENUM_FIELDS[key]:
                raise bad(key, value, "one of " + ", ".join(_ENUM_FIELDS[key]))
            changes[key] = value
        elif key in ("confine_to_working_dir", "network"):
            if not isinstance(value, bool):
                raise bad(key, value, "true or false")
            changes[key] = value
        elif key in ("max_output_chars", "max_processes"):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise bad(key, value, "a positive integer")
            changes[key] = value
        elif key == "bash_timeout":
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise bad(key, value, "a positive number of seconds")
            changes[key] = float(value)
        elif key == "tools":
            if value is None:
                changes[key] = None
            elif _is_str_list(value):
                changes[key] = frozenset(value)
            else:
                raise bad(key, value, "a list of tool names, or null for all")
        elif key in _LIST_FIELDS:
            if not _list_ok(value):
                raise bad(key, value, "a list of strings, or a mapping of 'add'/'remove' lists")
            changes[key] = _list_field(value, getattr(base, key))
    return attrs.evolve(base, **changes)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _list_ok(value: Any) -> bool:
    if _is_str_list(value):
        return True
    return (
        isinstance(value, dict)
        and bool(value)
        and set(value) <= {"add", "remove"}
        and all(_is_str_list(v) for v in value.values())
    )


def _list_field(
    value: list[str] | dict[str, list[str]], inherited: tuple[str, ...]
) -> tuple[str, ...]:
    """A list replaces the inherited one; ``{add, remove}`` edits it."""
    if isinstance(value, list):
        return tuple(value)
    kept = [v for v in inherited if v not in value.get("remove", [])]
    return tuple(kept + [v for v in value.get("add", []) if v not in kept])
