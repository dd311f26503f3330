"""The register codec and the YAML map loader: one way to encode, one way to decode."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.transports.regmap import (
    Point,
    RangeError,
    RegisterMap,
    check_limits,
    decode,
    encode,
)
from harness.transports.yamlmap import MapFileError, load_yaml_map

REPO = Path(__file__).resolve().parents[1]


def pt(type_: str, size: int = 1, **kw: object) -> Point:
    return Point(f"T.{type_}", kw.pop("address", 0), size, type_, **kw)  # type: ignore[arg-type]


# -- scale factors ---------------------------------------------------------------------------


def test_scaled_int16_round_trip_uses_sf_exponent() -> None:
    p = pt("int16", sf="T.W_SF")
    assert encode(p, 1234.5, -1) == [12345]
    assert decode(p, [12345], -1) == 1234.5
    assert encode(p, -1234.5, -1) == [(-12345) & 0xFFFF]
    assert decode(p, [(-12345) & 0xFFFF], -1) == -1234.5
    assert encode(p, 120000, 2) == [1200]
    assert decode(p, [1200], 2) == 120000.0


def test_fixed_exponent_and_unscaled() -> None:
    assert decode(pt("uint16", sf=-2), [6001]) == 60.01
    assert encode(pt("uint32", 2, sf=-2), 60.01) == [0, 6001]
    assert decode(pt("uint16"), [7]) == 7.0


def test_unknown_scale_factor_decodes_none_and_refuses_encode() -> None:
    p = pt("int16", sf="T.W_SF")
    assert decode(p, [100], None) is None
    with pytest.raises(ValueError, match=r"T\.int16: scale factor T\.W_SF is not known"):
        encode(p, 100.0, None)


# -- not implemented -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "size", "regs"),
    [
        ("int16", 1, [0x8000]),
        ("uint16", 1, [0xFFFF]),
        ("enum16", 1, [0xFFFF]),
        ("bitfield16", 1, [0xFFFF]),
        ("sunssf", 1, [0x8000]),
        ("int32", 2, [0x8000, 0]),
        ("uint32", 2, [0xFFFF, 0xFFFF]),
        ("enum32", 2, [0xFFFF, 0xFFFF]),
        ("bitfield32", 2, [0xFFFF, 0xFFFF]),
        ("int64", 4, [0x8000, 0, 0, 0]),
        ("uint64", 4, [0xFFFF] * 4),
        ("float32", 2, [0x7FC0, 0]),
        ("string", 4, [0, 0, 0, 0]),
    ],
)
def test_not_implemented_patterns(type_: str, size: int, regs: list[int]) -> None:
    p = pt(type_, size)
    assert decode(p, regs) is None
    assert decode(p, encode(p, None)) is None
    if type_ != "float32":  # any NaN is "not implemented"; the canonical one is 0x7FC00000
        assert encode(p, None) == regs


def test_accumulator_zero_is_zero_not_none() -> None:
    p = pt("acc32", 2)
    assert decode(p, [0, 0]) == 0.0
    assert encode(p, None) == [0, 0]
    assert decode(p, encode(p, 70000)) == 70000.0


def test_not_implemented_pattern_is_not_a_value() -> None:
    with pytest.raises(RangeError, match=r"T\.int16"):
        encode(pt("int16"), -32768)
    with pytest.raises(RangeError, match=r"T\.uint16"):
        encode(pt("uint16"), 65535)
    assert encode(pt("int16"), -32767) == [0x8001]


# -- ranges and types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "size", "value", "sf"),
    [("int16", 1, 40000, 0), ("uint16", 1, -1, 0), ("int16", 1, 3276.8, -1), ("sunssf", 1, 11, 0)],
)
def test_out_of_range_encode_names_the_point(type_: str, size: int, value: float, sf: int) -> None:
    with pytest.raises(RangeError, match=rf"^T\.{type_}: "):
        encode(pt(type_, size, sf=sf or None), value)


@pytest.mark.parametrize(
    ("type_", "size", "value"),
    [("int32", 2, -2_000_000_000), ("uint32", 2, 4_000_000_000), ("int64", 4, -(2**62))],
)
def test_wide_integers_round_trip(type_: str, size: int, value: int) -> None:
    p = pt(type_, size)
    assert decode(p, encode(p, value)) == float(value)


def test_float32_round_trip_and_nan() -> None:
    p = pt("float32", 2)
    assert decode(p, encode(p, 1.5)) == 1.5
    with pytest.raises(RangeError):
        encode(p, math.nan)


def test_enums_take_symbols_and_whole_numbers() -> None:
    p = pt("enum16", symbols={"OFF": 0, "ON": 1})
    assert encode(p, "ON") == [1]
    assert p.symbol(decode(p, [1])) == "ON"
    with pytest.raises(ValueError, match="'DIM' is not one of its symbols"):
        encode(p, "DIM")
    with pytest.raises(ValueError, match="whole numbers"):
        encode(p, 1.5)


def test_strings_pad_with_nul_and_refuse_overflow() -> None:
    p = pt("string", 2)
    assert encode(p, "SunS") == [0x5375, 0x6E53]
    assert encode(p, "ab") == [0x6162, 0]
    assert decode(p, [0x6162, 0]) == "ab"
    with pytest.raises(RangeError, match=r"T\.string: 'SunSp' is 5 bytes; the point holds 4"):
        encode(p, "SunSp")
    with pytest.raises(ValueError, match="expected a string"):
        encode(p, 3.0)


def test_coil_and_register_count_checks() -> None:
    coil = Point("C.x", 3, 1, "bool", table="coil")
    assert encode(coil, 1.0) == [1]
    assert decode(coil, [1]) == 1.0
    with pytest.raises(RangeError):
        encode(coil, 2)
    with pytest.raises(ValueError, match="expected 2 registers, got 1"):
        decode(pt("int32", 2), [0])
    with pytest.raises(ValueError, match="takes 2 registers"):
        pt("int32", 1)


def test_declared_limits() -> None:
    p = pt("int16", min=-10, max=10, units="W")
    check_limits(p, 10)
    with pytest.raises(RangeError, match=r"T\.int16: 11 is outside the declared range -10\.\.10 W"):
        check_limits(p, 11)


# -- maps ------------------------------------------------------------------------------------


def _map() -> RegisterMap:
    return RegisterMap(
        "m",
        [
            Point("A.x", 0, 1, "int16", sf="A.sf"),
            Point("A.sf", 1, 1, "sunssf"),
            Point("A.y", 2, 2, "int32"),
            Point("B.z", 10, 1, "uint16", access="RW"),
            Point("B.w", 11, 1, "uint16", access="RW"),
            Point("C.on", 0, 1, "bool", table="coil", access="RW"),
        ],
    )


def test_map_rejects_overlaps_and_dangling_scale_factors() -> None:
    with pytest.raises(ValueError, match=r"A\.y at 1 overlaps A\.x"):
        RegisterMap("m", [Point("A.x", 0, 2, "int32"), Point("A.y", 1, 1, "int16")])
    with pytest.raises(ValueError, match=r"A\.x is scaled by A\.sf, which is not a sunssf"):
        RegisterMap("m", [Point("A.x", 0, 1, "int16", sf="A.sf")])


def test_map_lookup_and_address_queries() -> None:
    m = _map()
    with pytest.raises(KeyError, match=r"no point 'Z\.x'; did you mean A\.x"):
        m.point("Z.x")
    assert [p.name for p in m.at(1, 2)] == ["A.sf", "A.y"]
    assert [p.name for p in m.at(3)] == ["A.y"]
    assert [p.name for p in m.at(0, 1, "coil")] == ["C.on"]
    assert m.block("B").address == 10 and m.block("B").size == 2


def test_spans_never_bridge_unmapped_holes_nor_exceed_the_limit() -> None:
    m = _map()
    spans = m.spans([m.point("A.x"), m.point("A.y"), m.point("B.w")], max_count=125)
    assert [(s.address, s.count) for s in spans] == [(0, 4), (11, 1)]
    spans = m.spans([m.point("A.x"), m.point("A.y")], max_count=2)
    assert [(s.address, s.count) for s in spans] == [(0, 1), (2, 2)]


def test_split_never_cuts_a_point() -> None:
    points = [Point(f"G.p{i}", 2 * i, 2, "uint32") for i in range(100)]
    m = RegisterMap("wide", points)
    pieces = m.split(0, 200, 125)
    assert pieces == [(0, 124), (124, 76)]


def test_with_limits_returns_a_guarded_copy() -> None:
    m = _map()
    guarded = m.with_limits({"B.z": (0, 5)})
    assert guarded.point("B.z").max == 5 and m.point("B.z").max is None
    with pytest.raises(KeyError):
        m.with_limits({"B.nope": (0, 1)})


def test_decode_registers_uses_the_scale_factor_in_the_same_read() -> None:
    m = _map()
    values = m.decode_registers(0, [123, 0xFFFE, 0, 7])
    assert values == {"A.x": 1.23, "A.sf": -2.0, "A.y": 7.0}


# -- YAML maps -------------------------------------------------------------------------------


def test_pcc_io_map_loads() -> None:
    m = load_yaml_map(REPO / "fixtures" / "maps" / "pcc-io.yaml")
    p = m.point("PCC.Closed")
    assert (p.table, p.address, p.access) == ("coil", 0, "RW")


GOOD = """\
name: ems
holding:
  - name: Site.Power
    address: 100
    type: int16
    scale: 1
    unit: W
  - name: Site.Setpoint
    address: 101
    type: int32
    access: RW
    min: -5000
    max: 5000
  - name: Site.Name
    address: 103
    type: string
    size: 4
  - name: Site.Mode
    address: 107
    type: enum16
    access: RW
    symbols: {IDLE: 0, RUN: 1}
coils:
  - name: Site.Enable
    address: 5
    access: RW
"""


def test_yaml_map_fields(tmp_path: Path) -> None:
    f = tmp_path / "ems.yaml"
    f.write_text(GOOD)
    m = load_yaml_map(f)
    assert m.name == "ems"
    assert m.point("Site.Power").sf == 1
    assert decode(m.point("Site.Power"), [123]) == 1230.0
    sp = m.point("Site.Setpoint")
    assert (sp.size, sp.min, sp.max, sp.access) == (2, -5000.0, 5000.0, "RW")
    assert m.point("Site.Name").size == 4
    assert m.point("Site.Mode").symbols == {"IDLE": 0, "RUN": 1}
    assert m.point("Site.Enable").table == "coil"


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "expected"),
    [
        ("    scale: 1\n", "    scal: 1\n", 6, "holding[0].scal", "unknown field; expected one of"),
        (
            "    type: int16\n",
            "    type: int17\n",
            5,
            "type",
            "'int17' is unknown; expected one of",
        ),
        ("    scale: 1\n", "    scale: x\n", 6, "scale", "'x' is not an exponent"),
        (
            "    address: 101\n",
            "    address: 100\n",
            8,
            "Site.Setpoint.address",
            "overlaps Site.Power",
        ),
        ("    address: 101\n", "    address: -1\n", 9, "address", "expected 0..65535"),
        ("    min: -5000\n", "    min: 6000\n", 12, "min", "is above max 5000"),
        ("    size: 4\n", "", 16, "size", "string needs a size in registers"),
        ("    access: RW\n    min", "    access: W\n    min", 11, "access", "expected R or RW"),
    ],
)
def test_yaml_map_errors_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, line: int, field: str, expected: str
) -> None:
    f = tmp_path / "bad.yaml"
    assert old in GOOD
    f.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(MapFileError) as info:
        load_yaml_map(f)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.line == line, str(err)
    assert field in err.field, str(err)
    assert expected in str(err)
    assert str(err).startswith(f"{f}:{line}: ")


def test_yaml_map_missing_field_and_bad_file(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("holding:\n  - name: A.b\n    type: uint16\n")
    with pytest.raises(MapFileError, match=r"m\.yaml:2: field 'holding\[0\]\.address': is missing"):
        load_yaml_map(f)
    f.write_text("holding: [\n")
    with pytest.raises(MapFileError, match="YAML syntax error"):
        load_yaml_map(f)
    with pytest.raises(MapFileError, match="file not found"):
        load_yaml_map(tmp_path / "none.yaml")
