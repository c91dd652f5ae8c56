"""Structured output: what the final answer must look like, and how it is checked.

An ``output_type`` (an attrs class, a dataclass, a ``TypedDict``, any type
:func:`~rho_actors._schema.schema_for` describes, or a JSON schema as a
dict) becomes an :class:`OutputSpec`. The run asks for it in one of two
ways: the provider's structured-output mode (``response_format`` with a
``json_schema``), or, where the endpoint does not support that, a
``final_answer`` tool whose parameters are the schema. Either way the
answer is validated against the schema (jsonschema, which names the exact
path that is wrong), then structured with cattrs into ``result.output``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs
import cattrs
import jsonschema

from ._errors import ConfigError
from ._schema import all_required, schema_for

OutputMode = Literal["auto", "response_format", "tool"]
OUTPUT_MODES = ("auto", "response_format", "tool")
FINAL_ANSWER_TOOL = "final_answer"
# Answers that fail validation are sent back to the model this many times.
DEFAULT_OUTPUT_RETRIES = 2
# A non-object output (a list, a number) is wrapped in this field for the
# final-answer tool, whose parameters must be an object.
_WRAPPED = "answer"

# By alias: the schema names an attrs field ``_secret`` "secret", as its
# constructor does.
_converter = cattrs.Converter(forbid_extra_keys=True, use_alias=True)


class OutputInvalid(Exception):
    """The answer does not match the output type; the message tells the model why."""


@attrs.frozen(kw_only=True)
class OutputSpec:
    """What the final answer must be: its schema, and the type to structure it into."""

    name: str
    schema: dict[str, Any]
    target: Any = None
    """The Python type of ``result.output``; None for a JSON schema (plain JSON)."""
    mode: OutputMode = "auto"
    retries: int = DEFAULT_OUTPUT_RETRIES
    _validator: Any = attrs.field(default=None, eq=False, repr=False)
    request_format: dict[str, Any] | None = None
    """The ``response_format`` to send as given (the seed's config field)."""

    def requesting(self, response_format: Mapping[str, Any]) -> OutputSpec:
        return attrs.evolve(self, request_format=dict(response_format))

    @classmethod
    def of(
        cls,
        value: Any,
        *,
        source: str,
        mode: OutputMode = "auto",
        retries: int = DEFAULT_OUTPUT_RETRIES,
    ) -> OutputSpec:
        """The spec for an ``output_type``; ``source`` names it in errors."""
        if isinstance(value, OutputSpec):
            return value
        if mode not in OUTPUT_MODES:
            raise ConfigError(
                f"got {mode!r}", key="output_mode", expected=" or ".join(OUTPUT_MODES)
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"got {retries!r}", key="output_retries", expected="an int >= 0")
        if isinstance(value, Mapping):
            schema = dict(value)
            if schema.get("type") == "json_schema" and isinstance(schema.get("json_schema"), dict):
                inner = schema["json_schema"]  # a whole response_format
                schema = dict(inner.get("schema") or {})
                name = str(inner.get("name") or "output")
            else:
                name = str(schema.get("title") or "output")
            target = None
        else:
            schema = schema_for(value, where=source)
            name = getattr(value, "__name__", None) or "output"
            target = value
        try:
            validator_cls = jsonschema.validators.validator_for(schema)
            validator_cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigError(
                f"not a valid JSON schema: {exc.message}", key=source, expected="a JSON schema"
            ) from exc
        return cls(
            name=re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "output",
            schema=schema,
            target=target,
            mode=mode,
            retries=retries,
            validator=validator_cls(schema),
        )

    @property
    def wrapped(self) -> bool:
        return self.schema.get("type") != "object"

    def response_format(self) -> dict[str, Any]:
        """The request's ``response_format`` in the provider's structured-output mode."""
        if self.request_format is not None:
            return self.request_format
        return {
            "type": "json_schema",
            "json_schema": {
                "name": self.name,
                "schema": self.schema,
                "strict": all_required(self.schema),
            },
        }

    def tool_spec(self) -> dict[str, Any]:
        """The ``final_answer`` tool offered when the endpoint has no such mode."""
        parameters = (
            {
                "type": "object",
                "properties": {_WRAPPED: self.schema},
                "required": [_WRAPPED],
                "additionalProperties": False,
            }
            if self.wrapped
            else self.schema
        )
        return {
            "type": "function",
            "function": {
                "name": FINAL_ANSWER_TOOL,
                "description": (
                    "Give your final answer. Call this once you are done, with the "
                    "answer in exactly this form; do not answer in plain text."
                ),
                "parameters": parameters,
            },
        }

    def parse_text(self, text: str) -> Any:
        """The answer in a final message (response_format mode)."""
        body = text.strip()
        fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
        if fenced:
            body = fenced.group(1)
        try:
            value = json.loads(body)
        except ValueError as exc:
            raise OutputInvalid(f"the answer is not valid JSON ({exc})") from exc
        return self.parse(value)

    def parse_arguments(self, arguments: Any) -> Any:
        """The answer given as the final-answer tool's arguments."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError as exc:
                raise OutputInvalid(f"the arguments are not valid JSON ({exc})") from exc
        if self.wrapped:
            if not isinstance(arguments, dict) or _WRAPPED not in arguments:
                raise OutputInvalid(f"put the answer in the {_WRAPPED!r} field")
            arguments = arguments[_WRAPPED]
        return self.parse(arguments)

    def parse(self, value: Any) -> Any:
        """Validate a decoded answer and structure it into the target type."""
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            shown = "; ".join(
                f"{'.'.join(str(p) for p in e.absolute_path) or '(answer)'}: {e.message}"
                for e in errors[:5]
            )
            raise OutputInvalid(f"the answer does not match the schema: {shown}")
        if self.target is None:
            return value
        try:
            return _converter.structure(value, self.target)
        except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
            detail = (
                "; ".join(cattrs.transform_error(exc))
                if isinstance(exc, cattrs.BaseValidationError)
                else str(exc)
            )
            raise OutputInvalid(f"the answer does not fit {self.name}: {detail}") from exc


def feedback(problem: str, spec: OutputSpec, mode: OutputMode) -> str:
    """What the model is told when its answer was not accepted."""
    how = (
        f"Call the {FINAL_ANSWER_TOOL} tool with the corrected answer."
        if mode == "tool"
        else "Reply again with only the corrected JSON, nothing else."
    )
    return f"Your answer was not accepted: {problem}. {how}"
