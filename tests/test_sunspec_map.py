"""SunSpec maps laid out from pysunspec2's definitions, and discovery of a device's chain.

Discovery here reads from an in-memory register image encoded with the shared codec; the same
walk over a real Modbus server is proven in test_modbus_endpoint.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from importlib import resources

import pytest

from harness.transports.regmap import RegisterMap, Value, encode
from harness.transports.sunspec import (
    SunSpecError,
    build_sunspec_map,
    choose_sf,
    discover,
    model_definition,
)

REQUIRED = [1, 701, 702, 703, 704, 713, 802, 203]


def _shipped_models() -> list[int]:
    folder = resources.files("sunspec2").joinpath("models", "json")
    ids = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"model_(\d+)\.json", entry.name)
        if match:
            ids.append(int(match.group(1)))
    return sorted(ids)


def image(regmap: RegisterMap, values: Mapping[str, Value] | None = None) -> dict[int, int]:
    """Registers a device serving ``regmap`` holds (constants of the map plus ``values``)."""
    values = dict(values or {})
    sfs = {
        p.name: int(v)
        for p in regmap
        if p.type == "sunssf" and isinstance(v := values.get(p.name, p.value), (int, float))
    }
    regs: dict[int, int] = {}
    for p in regmap:
        value = values.get(p.name, p.value)
        sf = sfs.get(p.sf) if isinstance(p.sf, str) else None
        for i, r in enumerate(encode(p, value, sf)):
            regs[p.address + i] = r
    return regs


def reader(
    regs: dict[int, int], log: list[tuple[int, int]] | None = None
) -> Callable[[int, int], list[int]]:
    def read(address: int, count: int) -> list[int]:
        assert 1 <= count <= 125, count
        if log is not None:
            log.append((address, count))
        missing = [a for a in range(address, address + count) if a not in regs]
        if missing:
            raise OSError(f"illegal address {missing[0]}")
        return [regs[a] for a in range(address, address + count)]

    return read


def test_required_models_chain_from_the_marker() -> None:
    m = build_sunspec_map(REQUIRED)
    assert m.point("SunS").address == 40000
    regs = image(m)
    assert [regs[40000], regs[40001]] == [0x5375, 0x6E53]
    address = 40002
    for block, model_id in zip(m.blocks, REQUIRED, strict=True):
        assert (block.model_id, block.address) == (model_id, address)
        gname = model_definition(model_id)["group"]["name"]
        assert block.name == gname
        assert m.point(f"{gname}.ID").value == model_id
        assert m.point(f"{gname}.L").value == block.size - 2
        address = block.end
    assert m.point("end.ID").address == address
    assert (regs[address], regs[address + 1]) == (0xFFFF, 0)


@pytest.mark.parametrize(
    ("model_id", "length"), [(1, 66), (701, 153), (702, 50), (703, 17), (704, 65), (713, 7)]
)
def test_lengths_match_the_definitions(model_id: int, length: int) -> None:
    m = build_sunspec_map([model_id])
    assert m.blocks[0].size - 2 == length


def test_every_shipped_model_lays_out() -> None:
    ids = _shipped_models()
    assert len(ids) > 100
    for model_id in ids:
        m = build_sunspec_map([model_id])
        definition = model_definition(model_id)
        fixed = next(p.get("value") for p in definition["group"]["points"] if p["name"] == "L")
        if fixed is not None:
            assert m.blocks[0].size - 2 == fixed, model_id


def test_names_types_and_resolved_scale_factors() -> None:
    m = build_sunspec_map(REQUIRED)
    w = m.point("DERMeasureAC.W")
    assert (w.type, w.sf, w.units, w.access) == ("int16", "DERMeasureAC.W_SF", "W", "R")
    assert m.point("DERCtlAC.WSet").access == "RW"
    assert m.point("DERCtlAC.PFWInj.PF").sf == "DERCtlAC.PF_SF"
    assert m.point("common.SN").size == 16 and m.point("common.SN").mandatory
    assert m.point("DERMeasureAC.InvSt").symbols["FAULT"] == 6
    assert m.point("ac_meter_abcn.TotWhExp").type == "acc32"
    assert m.sf_point(m.point("battery.SoC")) is m.point("battery.SoC_SF")


def test_other_base_and_duplicate_models() -> None:
    m = build_sunspec_map([1, 203, 203], base=0)
    assert m.point("SunS").address == 0
    first, second = m.point("ac_meter_abcn.W"), m.point("ac_meter_abcn[2].W")
    assert second.address - first.address == m.block("ac_meter_abcn").size
    assert second.sf == "ac_meter_abcn[2].W_SF"


def test_repeating_groups_counted_by_points() -> None:
    m = build_sunspec_map([705], repeats={"DERVoltVar.Crv": 2, "DERVoltVar.Crv.Pt": 3})
    assert m.point("DERVoltVar.NCrv").value == 2
    assert m.point("DERVoltVar.NPt").value == 3
    v = m.point("DERVoltVar.Crv[2].Pt[3].V")
    assert v.sf == "DERVoltVar.V_SF"
    assert "DERVoltVar.Crv[3].ActPt" not in m and "DERVoltVar.Crv[1].Pt[4].V" not in m
    assert m.point("DERVoltVar.Crv[2].Pt[3].Var").end == m.block(705).end  # last of the model
    bare = build_sunspec_map([705])
    assert bare.point("DERVoltVar.NCrv").value == 0
    assert not [p for p in bare if "Crv[" in p.name]


def test_repeating_groups_counted_by_length() -> None:
    m = build_sunspec_map([160], repeats={"mppt.module": 2})
    assert "mppt.module[2].DCW" in m and "mppt.module[3].DCW" not in m
    size_one = build_sunspec_map([160], repeats={"mppt.module": 1}).blocks[0].size
    assert m.blocks[0].size - size_one == size_one - build_sunspec_map([160]).blocks[0].size


def test_bad_repeats_are_refused() -> None:
    with pytest.raises(SunSpecError, match="NPt already counts 2"):
        build_sunspec_map(
            [707],
            repeats={
                "DERTripLV.Crv": 1,
                "DERTripLV.Crv.MustTrip.Pt": 2,
                "DERTripLV.Crv.MayTrip.Pt": 3,
            },
        )
    with pytest.raises(SunSpecError, match=r"DERVoltVar\.Crv"):
        build_sunspec_map([701], repeats={"DERVoltVar.Crv": 1})
    with pytest.raises(SunSpecError, match="model 9999 has no definition"):
        build_sunspec_map([9999])


def test_choose_sf_fits_the_range_with_finest_resolution() -> None:
    assert choose_sf(5000, finest=0) == 0
    assert choose_sf(50000, finest=0) == 1
    assert choose_sf(65.0, finest=-3) == -2
    assert choose_sf(65.0, limit=65534, finest=-3) == -3


# -- discovery --------------------------------------------------------------------------------


def test_discover_walks_the_chain_and_finds_the_same_map() -> None:
    built = build_sunspec_map(REQUIRED)
    log: list[tuple[int, int]] = []
    found = discover(reader(image(built), log))
    assert [(m.id, m.address, m.length) for m in found.models] == [
        (b.model_id, b.address, b.size - 2) for b in built.blocks
    ]
    assert [(p.name, p.address, p.size, p.type, p.sf) for p in found.regmap] == [
        (p.name, p.address, p.size, p.type, p.sf) for p in built
    ]
    assert all(count <= 125 for _, count in log)


def test_discover_reads_counts_from_the_device() -> None:
    built = build_sunspec_map(
        [1, 705, 160],
        repeats={
            "DERVoltVar.Crv": 2,
            "DERVoltVar.Crv.Pt": 3,
            "mppt.module": 4,
        },
    )
    found = discover(reader(image(built)))
    assert [p.name for p in found.regmap] == [p.name for p in built]
    assert "mppt.module[4].DCW" in found.regmap


def test_discover_falls_back_to_other_bases() -> None:
    at_zero = build_sunspec_map([1], base=0)
    assert discover(reader(image(at_zero))).regmap.point("common.ID").address == 2
    at_50000 = build_sunspec_map([1], base=50000)
    assert discover(reader(image(at_50000))).models[0].address == 50002


def test_discover_without_marker_says_where_it_looked() -> None:
    with pytest.raises(SunSpecError) as info:
        discover(reader({40000: 1, 40001: 2}))
    text = str(info.value)
    assert "40000: found [1, 2]" in text
    assert "0: illegal address 0" in text and "50000: illegal address 50000" in text


def test_discover_keeps_what_fits_a_short_model_and_lists_unknown_ones() -> None:
    built = build_sunspec_map([1, 701])
    regs = image(built)
    # Re-chain: 701 claims only 20 registers, then an unknown model 64999 of length 3, then end.
    start = built.block(701).address
    regs = {a: r for a, r in regs.items() if a < start + 22}
    regs[start + 1] = 20
    regs.update({start + 22: 64999, start + 23: 3, start + 24: 0, start + 25: 0, start + 26: 0})
    regs.update({start + 27: 0xFFFF, start + 28: 0})
    found = discover(reader(regs))
    assert [(m.id, m.length) for m in found.models] == [(1, 66), (701, 20), (64999, 3)]
    names = {p.name for p in found.regmap}
    assert {"DERMeasureAC.InvSt", "DERMeasureAC.DERMode", "model_64999.L"} <= names
    # W fits the 20 registers but its scale factor does not: it cannot be decoded, so it is not
    # mapped; TotWhInj (body offsets 17..20) is cut by the length.
    assert "DERMeasureAC.W" not in names and "DERMeasureAC.TotWhInj" not in names


def test_definitions_come_from_pysunspec2() -> None:
    text = resources.files("sunspec2").joinpath("models", "json", "model_701.json").read_text()
    assert model_definition(701) == json.loads(text)
