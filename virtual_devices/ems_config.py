"""The virtual EMS's parameters from a site file: its black-start data and its defects.

A site has an EMS in the plant only when its site file names one on a ``virtual`` endpoint (a
real EMS runs its own sequence). Defects (data/defects/black_start.yaml) name steps of the
sequence; a step the data file does not have is reported against the site file's ``defects``.
"""

from __future__ import annotations

from typing import NoReturn

from harness.config.errors import ConfigErrors
from harness.config.site import Site
from virtual_devices.defects import SITE, AppliedDefect, defects_for
from virtual_devices.plant.ems_params import EmsParams, load_ems_settings


def ems_params(site: Site, defects: list[AppliedDefect]) -> EmsParams | None:
    """The plant's EMS for ``site`` with its defects applied (None: no virtual EMS)."""
    ems = site.spec.ems
    if ems is None or ems.endpoint.transport != "virtual":
        return None
    settings = load_ems_settings()
    known = [s.name for s in settings.steps]
    given = defects_for(defects, SITE, "ems")
    swap: tuple[str, str] | None = None
    delays: dict[str, float] = {}
    if (d := given.get("black_start_step_swap")) is not None:
        if d.value not in (0.0, 1.0):
            _fail(site, f"black_start_step_swap: value is 1 (swaps) or 0, not {d.value:g}")
        pair = (str(d.extra["first"]), str(d.extra["second"]))
        _check_steps(site, "black_start_step_swap", pair, known)
        if pair[0] == pair[1]:
            _fail(site, f"black_start_step_swap: {pair[0]} with itself is no swap")
        if d.value == 1.0:
            swap = pair
    if (d := given.get("black_start_step_delay")) is not None:
        step = str(d.extra["step"])
        _check_steps(site, "black_start_step_delay", (step,), known)
        delays[step] = d.value
    params = settings.with_defects(swap, delays)
    if (d := given.get("peak_shaving_offset")) is not None:
        params = params.with_peak_offset(d.value * 1000.0)  # the defect's unit is kW
    return params


def _check_steps(site: Site, kind: str, names: tuple[str, ...], known: list[str]) -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        _fail(site, f"{kind}: unknown step {unknown[0]!r}; expected one of: {', '.join(known)}")


def _fail(site: Site, message: str) -> NoReturn:
    raise ConfigErrors.single(site.path, message, None, "defects")
