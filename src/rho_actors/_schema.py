"""JSON schemas from Python types: tool parameters and structured output.

One function describes a type to a model, so a custom tool's parameters and
an agent's ``output_type`` accept the same types: primitives, ``Literal``,
enums, ``Optional``/unions, lists, dicts, and classes whose fields are typed
(attrs classes, dataclasses, ``TypedDict``), nested to any depth.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Literal

import attrs

from ._errors import ConfigError

_PRIMITIVES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}

EXPECTED = (
    "str, int, float, bool, list, dict, Literal, Enum, Optional of these, "
    "or an attrs class, dataclass or TypedDict of them"
)


def is_record_type(tp: Any) -> bool:
    """A class with typed fields: attrs, dataclass or TypedDict."""
    return isinstance(tp, type) and (
        attrs.has(tp) or dataclasses.is_dataclass(tp) or typing.is_typeddict(tp)
    )


def schema_for(tp: Any, *, where: str, records: bool = True) -> dict[str, Any]:
    """The JSON schema of ``tp``; ``where`` names it in the error for a type that
    cannot be described. ``records=False`` refuses classes (a tool's parameters
    arrive as plain JSON values, not instances)."""
    if tp is Any:
        return {}
    if tp in _PRIMITIVES:
        return {"type": _PRIMITIVES[tp]}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if records and is_record_type(tp):
        return _object_schema(tp, where=where)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            inner = schema_for(members[0], where=where, records=records)
            if len(args) != len(members):
                if "type" in inner and isinstance(inner["type"], str):
                    inner["type"] = [inner["type"], "null"]
                else:
                    inner = {"anyOf": [inner, {"type": "null"}]}
            return inner
        return {"anyOf": [schema_for(a, where=where, records=records) for a in args]}
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        item = args[0] if args else Any
        return {"type": "array", "items": schema_for(item, where=where, records=records)}
    if origin is dict or tp is dict:
        if len(args) == 2 and args[1] is not Any:
            return {
                "type": "object",
                "additionalProperties": schema_for(args[1], where=where, records=records),
            }
        return {"type": "object"}
    raise ConfigError(
        f"cannot describe the type {tp!r} to a model",
        key=where,
        expected=EXPECTED
        if records
        else "str, int, float, bool, list, dict, Literal, Enum or Optional of these",
    )


def _object_schema(tp: type, *, where: str) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(tp)
    except (NameError, TypeError) as exc:
        raise ConfigError(
            f"cannot resolve the field types of {tp.__name__} ({exc})", key=where
        ) from exc
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, has_default in _fields(tp):
        properties[name] = schema_for(hints.get(name, Any), where=f"{where}.{name}")
        if not has_default:
            required.append(name)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _fields(tp: type) -> list[tuple[str, bool]]:
    """Field names and whether each has a default (optional for the model)."""
    if attrs.has(tp):
        return [
            (f.alias or f.name, f.default is not attrs.NOTHING) for f in attrs.fields(tp) if f.init
        ]
    if dataclasses.is_dataclass(tp):
        return [
            (
                f.name,
                f.default is not dataclasses.MISSING
                or f.default_factory is not dataclasses.MISSING,
            )
            for f in dataclasses.fields(tp)
            if f.init
        ]
    required: frozenset[str] = getattr(tp, "__required_keys__", frozenset())
    return [(name, name not in required) for name in typing.get_type_hints(tp)]


def all_required(schema: Any) -> bool:
    """Every object in the schema lists all its properties as required and allows
    no others: what OpenAI's strict structured-output mode accepts."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            props = schema.get("properties", {})
            if set(schema.get("required", ())) != set(props):
                return False
            if schema.get("additionalProperties", True) is not False:
                return False
        return all(all_required(v) for v in schema.values())
    if isinstance(schema, list):
        return all(all_required(v) for v in schema)
    return True
