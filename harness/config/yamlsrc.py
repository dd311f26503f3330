"""YAML loading that remembers where every value came from.

pydantic reports a location as a path of keys and indexes; the line map turns that path back into
the line a person can open in an editor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.config.errors import ConfigErrors

Loc = tuple[str | int, ...]


class LineMap:
    """Path of keys/indexes -> 1-based line of the node in the source file."""

    def __init__(self) -> None:
        self._lines: dict[Loc, int] = {}

    def add(self, loc: Loc, line: int) -> None:
        self._lines.setdefault(loc, line)

    def line(self, loc: Loc) -> int | None:
        """Line of ``loc`` or of its nearest ancestor that has one."""
        loc = tuple(loc)
        while True:
            if loc in self._lines:
                return self._lines[loc]
            if not loc:
                return None
            loc = loc[:-1]


def _construct(node: yaml.Node, loc: Loc, lines: LineMap, path: Path) -> Any:
    lines.add(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(key_node, (), LineMap(), path)
            if key in out:
                raise ConfigErrors.single(
                    path, f"duplicate key {key!r}", key_node.start_mark.line + 1, str(key)
                )
            out[key] = _construct(value_node, (*loc, key), lines, path)
            lines.add((*loc, key), key_node.start_mark.line + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, (*loc, i), lines, path) for i, v in enumerate(node.value)]
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    """Parse ``path``; syntax errors become a ConfigErrors naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigErrors.single(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors.single(path, f"cannot read file: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigErrors.single(path, f"YAML syntax error: {exc.problem}", line) from None
    except yaml.YAMLError as exc:
        raise ConfigErrors.single(path, f"YAML error: {exc}") from None
    lines = LineMap()
    if node is None:
        raise ConfigErrors.single(path, "file is empty; expected a YAML mapping")
    return _construct(node, (), lines, path), lines
