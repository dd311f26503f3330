"""The virtual EMS's parameters from a site file: its black-start data and its defects.

A site has an EMS in the plant only when its site file names one on a ``virtual`` endpoint (a
real EMS runs its own sequence). Defects (data/defects/black_start.yaml) name steps of the
sequence; a step the data file does not have is reported against the site file's ``defects``.
"""

from __future__ import annotations

import math
from dataclasses import replace
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
    order: tuple[str, ...] | None = None
    delays: dict[str, float] = {}
    if (d := given.get("black_start_order")) is not None:
        steps = d.extra["order"]
        if not isinstance(steps, list) or len(steps) < 2:
            _fail(site, "black_start_order: order is a list of two or more step names")
        names = tuple(str(s) for s in steps)
        _check_steps(site, "black_start_order", names, known)
        if len(set(names)) != len(names):
            _fail(site, f"black_start_order: a step is named twice in {list(names)}")
        if d.value == 1.0:
            order = names
    if (d := given.get("black_start_step_delay")) is not None:
        step = str(d.extra["step"])
        _check_steps(site, "black_start_step_delay", (step,), known)
        delays[step] = d.value
    params = settings.with_defects(order, delays)
    if (d := given.get("peak_shaving_target_offset")) is not None:
        params = params.with_peak_offset(d.value * 1000.0)  # the defect's unit is kW
    modes = params.modes  # the two switches are 0 or 1 (checked in virtual_devices/defects.py)
    if (d := given.get("soc_band_ignored")) is not None and d.value == 1.0:
        modes = replace(modes, soc_min_pct=0.0, soc_max_pct=100.0)
    if (d := given.get("ramp_uncoordinated")) is not None and d.value == 1.0:
        modes = replace(modes, dispatch_ramp_pct_s=math.inf)
    return replace(params, modes=modes)


def _check_steps(site: Site, kind: str, names: tuple[str, ...], known: list[str]) -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        _fail(site, f"{kind}: unknown step {unknown[0]!r}; expected one of: {', '.join(known)}")


def _fail(site: Site, message: str) -> NoReturn:
    raise ConfigErrors.single(site.path, message, None, "defects")
