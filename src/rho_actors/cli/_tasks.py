"""The task file of ``rho-actors dispatch``: YAML or JSONL, checked before anything runs.

A fan-out of a thousand tasks should not fail at task 817 because of a typo,
so the whole file is read and checked first, and a mistake is reported as
one line naming the file, the task (and its line), the field, and what was
expected::

    tasks.yaml: task 3 (line 7): field 'prompt' is missing (expected a non-empty string)
    tasks.jsonl: line 4: invalid JSON: Expecting ',' delimiter (column 18)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from ._common import UsageError

FIELDS = ("id", "prompt", "profile", "model", "working_dir")
OPTIONAL_TEXT_FIELDS = ("profile", "model", "working_dir")


@attrs.frozen(kw_only=True, slots=True)
class Task:
    """One prompt to dispatch, and the agent settings it overrides."""

    id: str
    prompt: str
    profile: str | None = None
    model: str | None = None
    working_dir: str | None = None
    file: str = ""
    position: str = ""

    @property
    def where(self) -> str:
        """Where the task is written, for error messages: ``tasks.yaml: task 3 (line 7)``."""
        return f"{self.file}: {self.position}"

    @property
    def agent_key(self) -> tuple[str | None, str | None, str | None]:
        """Tasks with the same key share one Agent."""
        return (self.profile, self.working_dir, self.model)


def load_tasks(path: Path) -> list[Task]:
    """Every task of ``path``; raises :class:`UsageError` naming what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the task file ({exc.strerror})") from exc
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        entries = _jsonl_entries(path, text)
    else:
        entries = _yaml_entries(path, text)
    if not entries:
        raise UsageError(f"{path}: no tasks (expected at least one task with a 'prompt')")
    tasks = [_task(entry, str(path), position, n) for n, (position, entry) in enumerate(entries, 1)]
    _check_unique_ids(tasks)
    return tasks


def _jsonl_entries(path: Path, text: str) -> list[tuple[str, Any]]:
    entries: list[tuple[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        position = f"line {number}"
        try:
            entries.append((position, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{path}: {position}: invalid JSON: {exc.msg} (column {exc.colno})"
            ) from None
    return entries


def _yaml_entries(path: Path, text: str) -> list[tuple[str, Any]]:
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}: invalid YAML{line}") from None
    items, nodes = _task_list(path, data, root)
    entries = []
    for index, item in enumerate(items):
        node = nodes[index] if index < len(nodes) else None
        line = f" (line {node.start_mark.line + 1})" if node is not None else ""
        entries.append((f"task {index + 1}{line}", item))
    return entries


def _task_list(path: Path, data: Any, root: yaml.Node | None) -> tuple[list[Any], list[yaml.Node]]:
    """The list of tasks, and its YAML nodes (for line numbers)."""
    if isinstance(data, Mapping) and "tasks" in data:
        data = data["tasks"]
        root = _mapping_value(root, "tasks")
    if data is None:
        return [], []
    if not isinstance(data, list):
        raise UsageError(
            f"{path}: got {type(data).__name__} (expected a list of tasks, "
            "or a mapping with a 'tasks' list)"
        )
    nodes = list(root.value) if isinstance(root, yaml.SequenceNode) else []
    return data, nodes


def _mapping_value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if getattr(key_node, "value", None) == key:
            return value_node  # type: ignore[no-any-return]
    return None


def _task(entry: Any, file: str, position: str, number: int) -> Task:
    where = f"{file}: {position}"
    if not isinstance(entry, Mapping):
        raise UsageError(
            f"{where}: got {type(entry).__name__} (expected a mapping with a 'prompt')"
        )
    unknown = sorted(str(k) for k in entry if k not in FIELDS)
    if unknown:
        raise UsageError(
            f"{where}: unknown field {unknown[0]!r} (expected one of {', '.join(FIELDS)})"
        )
    prompt = entry.get("prompt")
    if "prompt" not in entry:
        raise UsageError(f"{where}: field 'prompt' is missing (expected a non-empty string)")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError(
            f"{where}: field 'prompt': got {_describe(prompt)} (expected a non-empty string)"
        )
    fields = {name: _optional_text(entry, name, where) for name in OPTIONAL_TEXT_FIELDS}
    task_id = _task_id(entry, where, number)
    return Task(id=task_id, prompt=prompt, file=file, position=position, **fields)


def _optional_text(entry: Mapping[str, Any], name: str, where: str) -> str | None:
    value = entry.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise UsageError(
            f"{where}: field {name!r}: got {_describe(value)} (expected a non-empty string)"
        )
    return value


def _task_id(entry: Mapping[str, Any], where: str, number: int) -> str:
    """The task's ``id``, or its position in the file (counting from 1)."""
    value = entry.get("id")
    if value is None:
        return str(number)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise UsageError(f"{where}: field 'id': got {_describe(value)} (expected a string)")
    return str(value)


def _check_unique_ids(tasks: list[Task]) -> None:
    seen: dict[str, Task] = {}
    for task in tasks:
        first = seen.setdefault(task.id, task)
        if first is not task:
            raise UsageError(
                f"{task.where}: field 'id': {task.id!r} is already used by {first.position} "
                "(expected unique ids)"
            )


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "null"
