"""The pytest plugin: options, fixtures, markers and hooks. Thin: the work is in the packages.

Fixtures give a scenario the site as a bench would (its clock, each role's device, the verdict
recorder); hooks journal measurements per process and, on the controlling process, judge them
against the contract into ``verdicts.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from contextlib import nullcontext
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from harness import fleet
from harness.config.contract import Contract, load_contract
from harness.config.errors import ConfigErrors
from harness.config.site import Site, load_site
from harness.devices.roles import DeviceError
from harness.report import allure_wiring, duts
from harness.report.allure_wiring import Stepped
from harness.report.bundle import environment, finish_results, write_run_start
from harness.report.results import RunRecord, journal_dir
from harness.runinfo import default_out, point_latest
from harness.safety.audit import WriteAudit
from harness.safety.safe_state import drive_safe
from harness.safety.supervisor import SafetyTrip, Supervisor
from harness.verdicts.journal import Journal
from harness.verdicts.recorder import UnjudgedQuantity, VerdictRecorder
from harness.verdicts.scope import scope_of, write_scope

DEFAULT_SITE = Path("fixtures/sites/virtual-cluster.yaml")
DEFAULT_CONTRACT = Path("fixtures/contracts/example.yaml")
_STATE = pytest.StashKey["_RunState"]()
SETUP_ERROR = "setup-error.txt"


class _RunState:
    """Per-process state: inputs loaded once, the bench started at most once."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.site_path = Path(config.getoption("harness_site") or DEFAULT_SITE)
        self.contract_path = Path(config.getoption("harness_contract") or DEFAULT_CONTRACT)
        self._site: Site | None = None
        self._contract: Contract | None = None
        self.out: Path | None = None
        self.journal: Journal | None = None
        self.started = dt.datetime.now(dt.UTC)
        self.wall_start = time.perf_counter()
        self.bench: Any = None
        self.audit: WriteAudit | None = None
        self.supervisor: Any = None

    @property
    def site(self) -> Site:
        if self._site is None:
            self._site = _load(load_site, self.site_path)
        return self._site

    @property
    def contract(self) -> Contract:
        if self._contract is None:
            self._contract = _load(load_contract, self.contract_path)
        return self._contract


def _load(loader: Any, path: Path) -> Any:
    try:
        return loader(path)
    except ConfigErrors as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "acceptance-test harness")
    group.addoption("--site", dest="harness_site", help=f"site file (default {DEFAULT_SITE})")
    group.addoption(
        "--contract", dest="harness_contract", help=f"contract file (default {DEFAULT_CONTRACT})"
    )
    group.addoption("--out", dest="harness_out", help="results folder (default reports/<time>)")
    group.addoption(
        "--campaign", dest="harness_campaign", help="run only this campaign's scenarios"
    )
    group.addoption("--operator", dest="harness_operator", help="operator's name (witness report)")
    group.addoption("--witness", dest="harness_witness", help="witness's name (witness report)")
    group.addoption(
        "--dry-run",
        dest="harness_dry_run",
        action="store_true",
        help="send no write at all to any device; log each one that would have been sent",
    )
    group.addoption(
        "--allow-switching",
        dest="harness_allow_switching",
        action="store_true",
        help="let scenarios marked 'switching' open breakers on a live (non-virtual) site",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "campaign(*names): campaigns (factory, field, ci) this scenario belongs to"
    )
    config.addinivalue_line(
        "markers", "switching: the scenario switches live power (opens breakers, islands)"
    )
    config.addinivalue_line(
        "markers",
        "long_duration: hours of site time; its CAN traffic is not logged frame by frame",
    )
    state = _RunState(config)
    config.stash[_STATE] = state
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None and worker_input.get("harness_out"):
        state.out = Path(worker_input["harness_out"])
    elif config.getoption("harness_out"):
        state.out = Path(config.getoption("harness_out"))
    if worker_input is None and state.out is not None:
        write_run_start(state.out, _run_start(state))


def _run_start(state: _RunState) -> dict[str, Any]:
    cfg = state.config
    return {
        "started": state.started.isoformat(timespec="seconds"),
        "site": str(state.site_path),
        "contract": str(state.contract_path),
        "campaign": cfg.getoption("harness_campaign"),
        "operator": cfg.getoption("harness_operator"),
        "witness": cfg.getoption("harness_witness"),
    }


@pytest.hookimpl(optionalhook=True)  # an xdist hook: the plugin also loads without xdist
def pytest_configure_node(node: Any) -> None:
    """xdist: every worker journals into the controller's results folder."""
    state: _RunState = node.config.stash[_STATE]
    node.workerinput["harness_out"] = str(_out_dir(state))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` (as `harness run -n N` asks): each home's scenarios on one worker."""
    if config.getvalue("dist") != "loadgroup":
        return None
    state: _RunState = config.stash[_STATE]
    return fleet.make_scheduler(config, log, [n.name for n in state.site.spec.nodes])


def _out_dir(state: _RunState) -> Path:
    if state.out is None:
        state.out = default_out()
    return state.out


def _uses_scenarios(item: pytest.Item) -> bool:
    return "verdicts" in getattr(item, "fixturenames", ())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "node" in metafunc.fixturenames:
        state: _RunState = metafunc.config.stash[_STATE]
        names = [n.name for n in state.site.spec.nodes]
        metafunc.parametrize("node", names, ids=names)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    campaign = config.getoption("harness_campaign")
    if not campaign:
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("campaign")
        (keep if marker and campaign in marker.args else drop).append(item)
    kept = [
        (item.path.name, item.originalname) for item in keep if isinstance(item, pytest.Function)
    ]
    write_scope(_out_dir(config.stash[_STATE]), scope_of(campaign, kept))
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _uses_scenarios(item):
        allure_wiring.label_item(item)
    if item.get_closest_marker("switching") is None:
        return
    from harness.clock import RealClock
    from harness.devices.prompts import PromptService
    from harness.safety.switching import switching_refusal

    state: _RunState = item.config.stash[_STATE]
    refusal = switching_refusal(
        item.nodeid,
        virtual=state.site.is_virtual,
        allowed=bool(item.config.getoption("harness_allow_switching")),
        prompts=PromptService(RealClock()),
    )
    if refusal:
        pytest.skip(refusal)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def site_config(pytestconfig: pytest.Config) -> Site:
    """The loaded site file."""
    return pytestconfig.stash[_STATE].site


@pytest.fixture(scope="session")
def contract(pytestconfig: pytest.Config) -> Contract:
    """The loaded contract with its profile chain resolved."""
    return pytestconfig.stash[_STATE].contract


@pytest.fixture(scope="session")
def site(pytestconfig: pytest.Config, site_config: Site, contract: Contract) -> Iterator[Any]:
    """The site as the harness reaches it: clock and devices by role; virtual parts started here."""
    from harness.bench import open_bench

    state: _RunState = pytestconfig.stash[_STATE]
    try:
        bench = open_bench(site_config, contract)
    except (ConfigErrors, DeviceError, OSError, TimeoutError) as exc:
        # No device, no run: say why once, and let `harness run` exit 2 instead of judging.
        message = f"the site could not be set up: {exc}"
        out = _out_dir(state)
        out.mkdir(parents=True, exist_ok=True)
        (out / SETUP_ERROR).write_text(message + "\n", encoding="utf-8")
        pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)
    state.bench = bench
    worker = getattr(pytestconfig, "workerinput", {}).get("workerid", "main")
    audit_name = "audit.jsonl" if worker == "main" else f"audit-{worker}.jsonl"
    state.audit = WriteAudit(
        _out_dir(state) / audit_name, pytestconfig.getoption("harness_dry_run"), bench.clock.now
    )
    state.supervisor = _start_supervisor(bench, site_config, state.audit)
    try:
        yield bench
    finally:
        state.supervisor.stop()
        if bench.clock.simulated or state.audit.count("sent"):
            for problem in drive_safe(bench, state.audit):
                print(f"SAFE STATE: {problem}")
        else:  # a read-only run on live units (field): leave them as they were found
            print("SAFE STATE: nothing was written; the units are left as they were found")
        state.audit.close()
        # Identities last: by then every unit has spoken (a BMS names itself only on its bus).
        if state.out is not None:
            worker = getattr(pytestconfig, "workerinput", {}).get("workerid", "main")
            duts.write(state.out, duts.collect(bench), worker)
        bench.close()


def _start_supervisor(bench: Any, site: Site, audit: WriteAudit) -> Supervisor:
    """Watch the site: after every simulated advance, or by polling on a live site."""

    def on_trip(reason: str) -> None:
        audit.block(reason)
        if not bench.clock.simulated:  # a live site is made safe at once, from the poller
            drive_safe(bench, audit)

    supervisor = Supervisor(bench, site.spec.safety, on_trip)
    if bench.clock.simulated:
        bench.clock.add_advancer(supervisor.after_advance)
    else:
        supervisor.start_polling(site.spec.safety.poll_period)
    return supervisor


@pytest.fixture(scope="session")
def clock(site: Any) -> Any:
    return site.clock


@pytest.fixture
def inverter(site: Any, node: str) -> Any:
    return Stepped(site.nodes[node].inverter)


@pytest.fixture
def bms(site: Any, node: str) -> Any:
    return Stepped(site.nodes[node].bms)


@pytest.fixture
def grid(site: Any) -> Any:
    return Stepped(site.grid)


@pytest.fixture
def analyzer(site: Any) -> Any:
    return Stepped(site.analyzer)


@pytest.fixture
def load_bank(site: Any) -> Any:
    if site.load_bank is None:
        pytest.skip("the site has no load bank")
    return Stepped(site.load_bank)


@pytest.fixture
def pv_simulator(site: Any) -> Any:
    """The DC source standing in for the homes' PV arrays (harness.devices.pv_simulator)."""
    if site.pv_simulator is None:
        pytest.skip("the site has no PV simulator")
    return Stepped(site.pv_simulator)


@pytest.fixture
def pcc(site: Any) -> Any:
    if site.pcc_breaker is None:
        pytest.skip("the site has no controllable PCC breaker")
    return Stepped(site.pcc_breaker)


@pytest.fixture
def restore_after(site: Any) -> Iterator[None]:
    """Return the site to normal operation after a scenario that disturbs it, even if it failed."""
    yield
    site.restore()


@pytest.fixture
def verdicts(request: pytest.FixtureRequest, contract: Contract) -> VerdictRecorder:
    """Hands measured quantities to the contract; never holds a limit of its own."""
    state: _RunState = request.config.stash[_STATE]
    if state.journal is None:
        name = getattr(request.config, "workerinput", {}).get("workerid", "main")
        state.journal = Journal(journal_dir(_out_dir(state)), name)
    return VerdictRecorder(contract, state.journal, request.node.nodeid)


@pytest.fixture
def evidence_dir(request: pytest.FixtureRequest) -> Path:
    """A folder for this test's evidence files inside the results folder."""
    state: _RunState = request.config.stash[_STATE]
    path = _evidence_folder(state, request.node.nodeid)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _evidence_folder(state: _RunState, nodeid: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in nodeid)
    return _out_dir(state) / "evidence" / safe


@pytest.fixture(autouse=True)
def fleet_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    """On a live site run by several workers, a site-wide scenario never overlaps another one
    (see harness.fleet); a virtual site gives every worker its own plant and needs no lock."""
    config = request.config
    state: _RunState = config.stash[_STATE]
    worker = getattr(config, "workerinput", None)
    if worker is None or state.site.is_virtual or not _uses_scenarios(request.node):
        yield
        return
    exclusive = fleet.group_of(request.node) == fleet.SITE_GROUP
    try:
        with fleet.site_lock(_out_dir(state), exclusive, fleet.LOCK_TIMEOUT_S):
            yield
    except fleet.SiteLockTimeout as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(autouse=True)
def protocol_capture(request: pytest.FixtureRequest) -> Iterator[None]:
    """A scenario on the site leaves the traffic it saw in its evidence folder: the CAN frames
    of every BMS (BLF and ASC) and every Modbus transaction (``modbus.csv``).

    Tests that define their own ``site`` fixture (anything but a bench) record nothing. A
    scenario marked ``long_duration`` (a full charge cycle, a thermal soak: hours of frames that
    its quantities do not come from) leaves the Modbus transactions only.
    """
    from harness.bench import Bench

    site = request.getfixturevalue("site") if "site" in request.fixturenames else None
    if not isinstance(site, Bench):
        yield
        return
    from harness.devices.bms import capture_traffic
    from harness.transports.modbus import TransactionCsv

    folder: Path = request.getfixturevalue("evidence_dir")
    frames = request.node.get_closest_marker("long_duration") is None
    with (
        capture_traffic(site, lambda: folder) if frames else nullcontext(),
        TransactionCsv(folder / "modbus.csv", site.clock.now),
    ):
        yield


# -- hooks ------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A scenario whose quantity no clause judges is skipped, not failed: nothing to prove.
    Each scenario's simulated duration goes with its report (progress under xdist, junit.xml)."""
    sim_start = simulated_now(item.config)
    try:
        return (yield)
    except UnjudgedQuantity as exc:
        pytest.skip(str(exc))
    except SafetyTrip as exc:
        # Abort the run: safe state now, and no further scenario touches the site.
        state: _RunState = item.config.stash[_STATE]
        if state.bench is not None:
            drive_safe(state.bench, state.audit)
        item.session.shouldstop = str(exc)
        raise
    finally:
        sim_end = simulated_now(item.config)
        if sim_start is not None and sim_end is not None:
            item.user_properties.append(("simulated_seconds", round(sim_end - sim_start, 3)))
        _report_to_allure(item)


def _report_to_allure(item: pytest.Item) -> None:
    """Inside the test's own Allure result: a link per judged clause and every evidence file."""
    recorder = getattr(item, "funcargs", {}).get("verdicts")
    if not isinstance(recorder, VerdictRecorder):
        return
    allure_wiring.link_clauses(recorder.contract, recorder.measurements)
    evidence = {Path(e) for m in recorder.measurements for e in m.evidence}
    folder = _evidence_folder(item.config.stash[_STATE], item.nodeid)
    if folder.is_dir():
        evidence |= {p for p in folder.rglob("*") if p.is_file()}
    allure_wiring.attach_evidence(evidence, recorder.contract, recorder.measurements)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Last of all, after junit.xml and Allure have written: judge, report, hash."""
    state: _RunState = session.config.stash[_STATE]
    if state.journal is not None:
        state.journal.close()
    if state.out is None:
        return
    worker = getattr(session.config, "workerinput", None)
    simulated = _simulated_seconds(state)
    if worker is not None:
        if simulated:
            (journal_dir(state.out) / f"{worker['workerid']}.clock.json").write_text(
                json.dumps({"simulated_seconds": simulated})
            )
        return
    if not journal_dir(state.out).is_dir() or (state.out / SETUP_ERROR).exists():
        return  # no scenario ran in this session, or the site never came up
    for path in journal_dir(state.out).glob("*.clock.json"):
        simulated += json.loads(path.read_text())["simulated_seconds"]
    run = RunRecord(
        harness_version=version("solar-battery-harness"),
        started=state.started.isoformat(timespec="seconds"),
        wall_seconds=round(time.perf_counter() - state.wall_start, 3),
        simulated_seconds=round(simulated, 3),
        campaign=session.config.getoption("harness_campaign"),
        site=str(state.site_path),
        site_sha256=state.site.sha256,
        contract=str(state.contract_path),
        contract_sha256=state.contract.sha256,
        complete=exitstatus in (0, 1),
        extra={
            "operator": session.config.getoption("harness_operator"),
            "witness": session.config.getoption("harness_witness"),
        },
    )
    alluredir = session.config.getoption("allure_report_dir", None)
    if alluredir:
        allure_wiring.write_environment(Path(alluredir), environment(state.out, run))
    finish_results(state.out, state.site, state.contract, run)
    if state.out.parent.name == "reports" or os.environ.get("HARNESS_LATEST"):
        point_latest(state.out)


def simulated_now(config: pytest.Config) -> float | None:
    """Site time of this process's simulated clock, for progress display; None on a live site."""
    state = config.stash.get(_STATE, None)
    if state is None or state.bench is None or not state.bench.clock.simulated:
        return None
    return float(state.bench.clock.now())


def _simulated_seconds(state: _RunState) -> float:
    bench = state.bench
    if bench is None or not bench.clock.simulated:
        return 0.0
    return float(bench.clock.now())
