"""Register maps of non-SunSpec devices (EMS, I/O modules), read from YAML files.

A map file lists holding registers and coils::

    name: pcc-io                      # optional; defaults to the file name
    holding:
      - name: Status.Operations       # "Group.Point", unique in the map
        address: 0                    # 0-based PDU address
        type: uint16                  # a type of harness.transports.regmap.TYPES
        size: 8                       # registers; only for strings, other types know theirs
        scale: -1                     # value = raw * 10**scale (integer exponent), default 0
        unit: V                       # optional
        access: RW                    # R (default) or RW
        min: 0                        # optional declared range; the write guard holds writes
        max: 300                      #   to it and the virtual device rejects writes outside
        symbols: {OPEN: 0, CLOSED: 1} # optional, for enums
        description: ...              # optional, free text
    coils:
      - name: PCC.Closed
        address: 0
        access: RW
        description: ...

Every mistake is reported as :class:`MapFileError` naming the file, the line, the field and what
was expected, so the person who wrote the map can fix it without reading this code.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from harness.transports.regmap import TYPES, Point, RegisterMap

_HOLDING_FIELDS = {
    "name",
    "address",
    "type",
    "size",
    "scale",
    "unit",
    "access",
    "min",
    "max",
    "symbols",
    "description",
}
_COIL_FIELDS = {"name", "address", "type", "access", "description"}
_TOP_FIELDS = {"name", "description", "holding", "coils"}


class MapFileError(ValueError):
    """A map file that cannot be used; the message says where and what was expected."""

    def __init__(self, file: Path, line: int | None, field: str, message: str) -> None:
        self.file, self.line, self.field = file, line, field
        where = f"{file}:{line}" if line else str(file)
        super().__init__(f"{where}: field '{field}': {message}")


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, node: yaml.Node | None, field: str, message: str) -> MapFileError:
        line = node.start_mark.line + 1 if node is not None else None
        return MapFileError(self.path, line, field, message)

    def mapping(self, node: yaml.Node, field: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, field, "expected a mapping of field: value")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            name = self.scalar(key, field)
            if not isinstance(name, str):
                raise self.fail(key, field, f"{name!r} is not a field name")
            if name in out:
                raise self.fail(key, name, "appears twice; expected each field once")
            out[name] = (key, value)
        return out

    def scalar(self, node: yaml.Node, field: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, field, "expected a single value, not a list or mapping")
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)

    def integer(self, node: yaml.Node, field: str, low: int, high: int, what: str) -> int:
        value = self.scalar(node, field)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(node, field, f"{value!r} is not {what}")
        return value

    def number(self, node: yaml.Node, field: str) -> float:
        value = self.scalar(node, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(node, field, f"{value!r} is not a number; expected a plain number")
        return float(value)

    def text(self, node: yaml.Node, field: str) -> str:
        value = self.scalar(node, field)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, field, f"{value!r} is not a text; expected a non-empty string")
        return value


def _entry(reader: _Reader, node: yaml.Node, table: str, index: int) -> Point:
    where = f"{table}[{index}]"
    fields = reader.mapping(node, where)
    allowed = _HOLDING_FIELDS if table == "holding" else _COIL_FIELDS
    for name, (key, _) in fields.items():
        if name not in allowed:
            raise reader.fail(
                key, f"{where}.{name}", f"unknown field; expected one of {sorted(allowed)}"
            )
    for required in ("name", "address") + (("type",) if table == "holding" else ()):
        if required not in fields:
            raise reader.fail(node, f"{where}.{required}", "is missing; every entry needs it")

    def get(name: str) -> yaml.Node | None:
        return fields[name][1] if name in fields else None

    pname = reader.text(fields["name"][1], f"{where}.name")
    label = f"{where} ({pname})"
    address = reader.integer(
        fields["address"][1], f"{label}.address", 0, 0xFFFF, "an address; expected 0..65535"
    )
    access = "R"
    if (n := get("access")) is not None:
        access = reader.text(n, f"{label}.access")
        if access not in ("R", "RW"):
            raise reader.fail(n, f"{label}.access", f"{access!r}; expected R or RW")
    description = reader.text(n, f"{label}.description") if (n := get("description")) else ""
    if table == "coils":
        if (n := get("type")) is not None and reader.scalar(n, f"{label}.type") != "bool":
            raise reader.fail(n, f"{label}.type", "coils are bool; expected bool or no type")
        return Point(pname, address, 1, "bool", access=access, table="coil", label=description)  # type: ignore[arg-type]

    tnode = fields["type"][1]
    ptype = reader.text(tnode, f"{label}.type")
    if ptype not in TYPES or ptype == "bool":
        known = ", ".join(t for t in TYPES if t != "bool")
        raise reader.fail(tnode, f"{label}.type", f"{ptype!r} is unknown; expected one of {known}")
    kind_size = TYPES[ptype].size
    if (n := get("size")) is not None:
        if kind_size is not None:
            raise reader.fail(n, f"{label}.size", f"{ptype} is {kind_size} registers; remove size")
        size = reader.integer(n, f"{label}.size", 1, 123, "a register count; expected 1..123")
    elif kind_size is None:
        raise reader.fail(tnode, f"{label}.size", f"{ptype} needs a size in registers")
    else:
        size = kind_size
    scale = 0
    if (n := get("scale")) is not None:
        scale = reader.integer(n, f"{label}.scale", -10, 10, "an exponent; expected -10..10")
    unit = reader.text(n, f"{label}.unit") if (n := get("unit")) is not None else None
    low = reader.number(n, f"{label}.min") if (n := get("min")) is not None else None
    high = reader.number(n, f"{label}.max") if (n := get("max")) is not None else None
    if low is not None and high is not None and low > high:
        raise reader.fail(get("min"), f"{label}.min", f"{low:g} is above max {high:g}")
    symbols: dict[str, int] = {}
    if (n := get("symbols")) is not None:
        for sym, (_key, sval) in reader.mapping(n, f"{label}.symbols").items():
            symbols[sym] = reader.integer(
                sval, f"{label}.symbols.{sym}", 0, 0xFFFFFFFF, "an enum value; expected an integer"
            )
    try:
        return Point(
            pname,
            address,
            size,
            ptype,
            sf=scale or None,
            access=access,  # type: ignore[arg-type]
            units=unit,
            min=low,
            max=high,
            symbols=symbols,
            label=description,
        )
    except ValueError as exc:
        raise reader.fail(node, label, str(exc)) from None


def load_yaml_map(path: str | Path) -> RegisterMap:
    """Read a map file; any problem raises MapFileError naming file, line and field."""
    path = Path(path)
    reader = _Reader(path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except FileNotFoundError:
        raise MapFileError(path, None, "", "file not found") from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise MapFileError(path, line, "", f"YAML syntax error: {exc.problem}") from None
    if root is None:
        raise MapFileError(path, None, "", "file is empty; expected a mapping with holding/coils")
    top = reader.mapping(root, "map")
    for name, (key, _) in top.items():
        if name not in _TOP_FIELDS:
            raise reader.fail(key, name, f"unknown field; expected one of {sorted(_TOP_FIELDS)}")
    if "holding" not in top and "coils" not in top:
        raise reader.fail(root, "holding", "the map has no holding registers and no coils")
    map_name = reader.text(top["name"][1], "name") if "name" in top else path.stem
    points: list[Point] = []
    lines: dict[str, yaml.Node] = {}
    for table in ("holding", "coils"):
        if table not in top:
            continue
        seq = top[table][1]
        if not isinstance(seq, yaml.SequenceNode):
            raise reader.fail(seq, table, "expected a list of entries")
        for index, item in enumerate(seq.value):
            point = _entry(reader, item, table, index)
            if point.name in lines:
                raise reader.fail(item, f"{table}[{index}].name", f"{point.name!r} is used twice")
            lines[point.name] = item
            points.append(point)
    for table in ("holding", "coil"):
        ordered = sorted((p for p in points if p.table == table), key=lambda p: p.address)
        for before, after in itertools.pairwise(ordered):
            if after.address < before.end:
                raise reader.fail(
                    lines[after.name],
                    f"{after.name}.address",
                    f"{after.address} overlaps {before.name} ({before.address}..{before.end - 1}); "
                    "expected a free address",
                )
    return RegisterMap(map_name, points)
