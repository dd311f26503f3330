"""Turn pydantic's validation errors into ConfigErrors that point at lines of the source file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from harness.config.errors import ConfigError, ConfigErrors
from harness.config.yamlsrc import LineMap

M = TypeVar("M", bound=BaseModel)


def field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field; check the spelling against the documented fields"
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if kind in ("literal_error", "enum"):
        return f"{err.get('input')!r} is not allowed; {msg.lower()}"
    return msg


def validate(model: type[M], data: Any, path: Path, lines: LineMap, context: Any = None) -> M:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = tuple(
                p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))
            )
            # Discriminated unions add the tag to the location; it is not a key in the file.
            loc = tuple(p for p in loc if p not in _UNION_TAGS)
            errors.append(ConfigError(path, lines.line(loc), field_path(loc), _message(err)))
        raise ConfigErrors(errors) from None


_UNION_TAGS = {"virtual", "modbus_tcp", "modbus_rtu", "can", "visa"}
