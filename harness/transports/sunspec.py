"""SunSpec register maps, laid out from the model definitions that pysunspec2 ships.

The models are never re-typed by hand: :func:`build_sunspec_map` reads
``sunspec2/models/json/model_<id>.json`` and lays the chosen models out after the "SunS" marker,
as a device (or a virtual device) serves them; :func:`discover` walks a live device's chain and
lays out what it finds, so both sides of a link use the same :class:`RegisterMap`.

Point names are ``Group.Point`` with pysunspec2's group names (``DERMeasureAC.W``,
``common.SN``); nested groups add their names (``DERCtlAC.PFWInj.PF``) and repeated groups an
1-based index (``DERVoltVar.Crv[1].Pt[2].V``). A model that appears twice in one chain has its
second instance named ``Group[2]`` (``ac_meter_abcn[2].W``). The marker is ``SunS`` and the end
model ``end.ID`` / ``end.L``.

Repeating groups. A definition gives a group's count as 0 ("as many as the model length holds")
or as the name of a count point (``NCrv``). When building a map, both take their count from
``repeats`` (keyed by the group path without indexes, e.g. ``"DERVoltVar.Crv"``), default 0; the
count point then serves that number as a constant. When discovering, counts come from the
device: a count point is read from the model's registers, a count-0 group fills the rest of the
model length. Limitation: a count point must be laid out before the group it counts (true of every
shipped model); a device whose model is shorter than its definition keeps only the points that
fit in its length.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

from harness.transports.regmap import TYPES, Block, Point, RegisterMap, decode

SUNS_MARKER = (0x5375, 0x6E53)  # "SunS"
END_MODEL_ID = 0xFFFF
DEFAULT_BASES = (40000, 0, 50000)
MAX_READ = 125


class SunSpecError(ValueError):
    """A model that cannot be laid out, or a device whose chain cannot be walked."""


@cache
def _load_definition(model_id: int) -> str:
    path = resources.files("sunspec2").joinpath("models", "json", f"model_{model_id}.json")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SunSpecError(f"SunSpec model {model_id} has no definition in pysunspec2") from None


def model_definition(model_id: int) -> dict[str, Any]:
    """The pysunspec2 JSON definition of a model (a fresh copy, free to modify)."""
    data: dict[str, Any] = json.loads(_load_definition(model_id))
    return data


def _strip_indexes(path: str) -> str:
    out, depth = [], 0
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


class _ModelLayout:
    """Lays out one model instance at an address, resolving scale factors and counts."""

    def __init__(
        self,
        model_id: int,
        gdef: Mapping[str, Any],
        name: str,
        address: int,
        repeats: Mapping[str, int],
        live: Sequence[int] | None,
    ) -> None:
        self.model_id = model_id
        self.name = name
        self.address = address
        self.repeats = repeats
        self.live = live  # registers of the model from its ID, when discovering
        self.points: dict[str, Point] = {}
        self.scopes: dict[str, tuple[str, ...]] = {}  # point name -> scopes, innermost first
        self.raw_sf: dict[str, str] = {}
        self.end = self._group(gdef, name, address, (name,))

    # ---------------------------------------------------------------------------------------

    def _group(self, gdef: Mapping[str, Any], path: str, addr: int, scopes: tuple[str, ...]) -> int:
        for pdef in gdef.get("points", []):
            addr = self._point(pdef, path, addr, scopes)
        for sub in gdef.get("groups", []):
            subpath = f"{path}.{sub['name']}"
            count = sub.get("count")
            if count is None:
                addr = self._group(sub, subpath, addr, (subpath, *scopes))
                continue
            n = self._count(sub, subpath, count, addr, scopes)
            for i in range(1, n + 1):
                inst = f"{subpath}[{i}]"
                addr = self._group(sub, inst, addr, (inst, *scopes))
        return addr

    def _point(self, pdef: Mapping[str, Any], path: str, addr: int, scopes: tuple[str, ...]) -> int:
        ptype = pdef["type"]
        if ptype not in TYPES:
            raise SunSpecError(
                f"model {self.model_id}: point {pdef['name']} has unknown type {ptype}"
            )
        size = int(pdef.get("size") or TYPES[ptype].size or 1)
        name = f"{path}.{pdef['name']}"
        sf = pdef.get("sf")
        if isinstance(sf, str):
            self.raw_sf[name] = sf
            sf = None
        value = pdef.get("value")
        if pdef["name"] == "ID" and path == self.name:
            value = self.model_id
        symbols = {s["name"]: int(s["value"]) for s in pdef.get("symbols", [])}
        self.points[name] = Point(
            name=name,
            address=addr,
            size=size,
            type=ptype,
            sf=sf if isinstance(sf, int) else None,
            access="RW" if pdef.get("access") == "RW" else "R",
            mandatory=pdef.get("mandatory") == "M",
            units=pdef.get("units"),
            min=pdef.get("min"),
            max=pdef.get("max"),
            symbols=symbols,
            value=value,
            label=pdef.get("label", ""),
        )
        self.scopes[name] = scopes
        return addr + size

    def _resolve(self, short: str, scopes: tuple[str, ...]) -> str | None:
        for scope in scopes:
            candidate = f"{scope}.{short}"
            if candidate in self.points:
                return candidate
        return None

    def _count(
        self,
        sub: Mapping[str, Any],
        subpath: str,
        count: int | str,
        addr: int,
        scopes: tuple[str, ...],
    ) -> int:
        key = _strip_indexes(subpath)
        if isinstance(count, int) and count > 0:
            return count
        if isinstance(count, str):
            cname = self._resolve(count, scopes)
            if cname is None:
                raise SunSpecError(
                    f"model {self.model_id}: group {key} is counted by {count}, which is not laid "
                    "out before it"
                )
            cpoint = self.points[cname]
            if self.live is not None:
                offset = cpoint.address - self.address
                regs = self.live[offset : offset + cpoint.size]
                if len(regs) < cpoint.size:
                    return 0
                value = decode(cpoint, regs)
                return int(value) if isinstance(value, float) else 0
            wanted = self.repeats.get(key)
            if cpoint.value is not None and wanted is not None and wanted != cpoint.value:
                raise SunSpecError(
                    f"model {self.model_id}: {cname} already counts {cpoint.value} for another "
                    f"group; cannot repeat {key} {wanted} times"
                )
            n = int(wanted if wanted is not None else (cpoint.value or 0))
            self.points[cname] = replace(cpoint, value=n)
            return n
        # count 0: as many as the model length holds
        if self.live is not None:
            probe = _ModelLayout(self.model_id, sub, "probe", 0, {}, None)
            size = probe.end
            remaining = self.address + len(self.live) - addr
            return remaining // size if size else 0
        return int(self.repeats.get(key, 0))

    def finish(self, length: int | None = None) -> list[Point]:
        """Points with scale factors resolved, ID and L set, cut to ``length`` if given."""
        body_end = self.end if length is None else self.address + 2 + length
        out: list[Point] = []
        for name, point in self.points.items():
            if point.end > body_end:
                continue
            if name in self.raw_sf:
                sf_name = self._resolve(self.raw_sf[name], self.scopes[name])
                if sf_name is None:
                    raise SunSpecError(
                        f"model {self.model_id}: {name} is scaled by {self.raw_sf[name]}, which "
                        "the model does not define"
                    )
                if self.points[sf_name].end > body_end:
                    continue
                point = replace(point, sf=sf_name)
            if name == f"{self.name}.L":
                point = replace(point, value=body_end - self.address - 2)
            out.append(point)
        return out


def _instance_name(gname: str, seen: dict[str, int]) -> str:
    seen[gname] = seen.get(gname, 0) + 1
    return gname if seen[gname] == 1 else f"{gname}[{seen[gname]}]"


def _header(base: int) -> Point:
    return Point("SunS", base, 2, "string", value="SunS", mandatory=True)


def _end(address: int) -> list[Point]:
    return [
        # 0xFFFF is uint16's "not implemented" pattern: the end ID is served by having no value.
        Point("end.ID", address, 1, "uint16", mandatory=True),
        Point("end.L", address + 1, 1, "uint16", value=0, mandatory=True),
    ]


def build_sunspec_map(
    model_ids: Sequence[int],
    base: int = 40000,
    repeats: Mapping[str, int] | None = None,
    name: str | None = None,
) -> RegisterMap:
    """The map a device serving ``model_ids`` (in that order) from ``base`` presents.

    ``repeats`` gives the number of instances of repeating groups, by group path without indexes
    (e.g. ``{"DERVoltVar.Crv": 2, "DERVoltVar.Crv.Pt": 4}``); unlisted ones have none.
    """
    repeats = dict(repeats or {})
    points: list[Point] = [_header(base)]
    blocks: list[Block] = []
    seen: dict[str, int] = {}
    addr = base + 2
    used: set[str] = set()
    for model_id in model_ids:
        definition = model_definition(model_id)
        gdef = definition["group"]
        inst = _instance_name(gdef["name"], seen)
        layout = _ModelLayout(model_id, gdef, inst, addr, repeats, None)
        used.update(k for k in repeats if k.split(".", 1)[0] == gdef["name"])
        model_points = layout.finish()
        fixed = next((p.get("value") for p in gdef["points"] if p["name"] == "L"), None)
        length = layout.end - addr - 2
        expanded = any(k.split(".", 1)[0] == gdef["name"] for k in repeats)
        if fixed is not None and fixed != length and not expanded:
            raise SunSpecError(
                f"model {model_id}: laid out {length} registers, the definition says L={fixed}"
            )
        points.extend(model_points)
        blocks.append(Block(inst, addr, length + 2, model_id))
        addr = layout.end
    unknown = set(repeats) - used
    if unknown:
        raise SunSpecError(f"repeats name groups of no chosen model: {', '.join(sorted(unknown))}")
    points.extend(_end(addr))
    if addr + 2 > 0x10000:
        raise SunSpecError(f"models {list(model_ids)} do not fit below address 65536 from {base}")
    label = name or "sunspec:" + ",".join(str(m) for m in model_ids)
    return RegisterMap(label, points, blocks)


class ModelInfo(NamedTuple):
    """One model found on a device: its id, the address of its ID register, its length L."""

    id: int
    address: int
    length: int


class Discovery(NamedTuple):
    models: list[ModelInfo]
    regmap: RegisterMap


ReadFn = Callable[[int, int], Sequence[int]]
"""read_fn(address, count) -> registers; raises on a Modbus exception or a timeout."""


def _read(read_fn: ReadFn, address: int, count: int) -> list[int]:
    regs: list[int] = []
    while count > 0:
        n = min(count, MAX_READ)
        chunk = list(read_fn(address, n))
        if len(chunk) != n:
            raise SunSpecError(f"asked for {n} registers at {address}, got {len(chunk)}")
        regs.extend(chunk)
        address += n
        count -= n
    return regs


def find_base(read_fn: ReadFn, bases: Sequence[int] = DEFAULT_BASES) -> int:
    """The address of the "SunS" marker, trying ``bases`` in order."""
    problems = []
    for base in bases:
        try:
            regs = list(read_fn(base, 2))
        except Exception as exc:  # whatever the transport raises, the next base may answer
            problems.append(f"{base}: {exc}")
            continue
        if tuple(regs) == SUNS_MARKER:
            return base
        problems.append(f"{base}: found {regs}, not the SunS marker")
    raise SunSpecError("no SunSpec marker; " + "; ".join(problems))


def discover(
    read_fn: ReadFn, bases: Sequence[int] = DEFAULT_BASES, max_models: int = 128
) -> Discovery:
    """Walk a live device's model chain and lay out what it holds.

    Models without a pysunspec2 definition are listed and mapped by their ID and L only.
    """
    base = find_base(read_fn, bases)
    points: list[Point] = [_header(base)]
    blocks: list[Block] = []
    models: list[ModelInfo] = []
    seen: dict[str, int] = {}
    addr = base + 2
    while True:
        if len(models) >= max_models:
            raise SunSpecError(f"more than {max_models} models from {base}; chain end missing?")
        if addr + 1 > 0xFFFF:
            raise SunSpecError(f"model chain from {base} runs past address 65535")
        (model_id,) = _read(read_fn, addr, 1)
        if model_id == END_MODEL_ID:
            break
        (length,) = _read(read_fn, addr + 1, 1)
        if addr + 2 + length > 0x10000:
            raise SunSpecError(f"model {model_id} at {addr} claims length {length}, past 65535")
        models.append(ModelInfo(model_id, addr, length))
        try:
            gdef = model_definition(model_id)["group"]
        except SunSpecError:
            gdef = None
        if gdef is None:
            inst = _instance_name(f"model_{model_id}", seen)
            points.append(Point(f"{inst}.ID", addr, 1, "uint16", value=model_id, mandatory=True))
            points.append(Point(f"{inst}.L", addr + 1, 1, "uint16", value=length, mandatory=True))
        else:
            inst = _instance_name(gdef["name"], seen)
            live = [model_id, length, *_read(read_fn, addr + 2, length)]
            layout = _ModelLayout(model_id, gdef, inst, addr, {}, live)
            points.extend(layout.finish(length))
        blocks.append(Block(inst, addr, length + 2, model_id))
        addr += 2 + length
    points.extend(_end(addr))
    return Discovery(models, RegisterMap(f"sunspec@{base}", points, blocks))


def definition_length(model_id: int, regs: Sequence[int]) -> int | None:
    """The length L that pysunspec2's definition implies for a model as a device serves it.

    ``regs`` are the model's registers from its ID (ID, L, body). A fixed model's L is its
    definition's; a model with repeating groups takes its counts from ``regs`` (count points, or
    as many whole instances as the body holds), so a body that is not a whole number of
    instances comes out shorter than the L the device claims. None when pysunspec2 has no
    definition of ``model_id`` (a vendor model).
    """
    try:
        gdef = model_definition(model_id)["group"]
    except SunSpecError:
        return None
    layout = _ModelLayout(model_id, gdef, gdef["name"], 0, {}, list(regs))
    return layout.end - 2


def choose_sf(max_abs: float, limit: int = 32767, finest: int = -3) -> int:
    """The finest sunssf (not below ``finest``) with which ``max_abs`` still fits ``limit`` raw."""
    exponent = finest
    while abs(max_abs) / 10.0**exponent > limit and exponent < 10:
        exponent += 1
    return exponent
