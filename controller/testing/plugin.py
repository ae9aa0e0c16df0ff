"""The pytest plugin of the testing kit (docs/testing.md).

An installed alsctl registers it with pytest (entry point `pytest11`, name `alsctl`), so its
fixtures are there in any project whose environment has alsctl installed with its `testing`
extra (pytest, pytest-asyncio). `-p no:alsctl` leaves it out.

Fixtures:
- `alsctl_rig`, `alsctl_prescription`: the configs the others use by default (options
  `--alsctl-rig` / `--alsctl-prescription`, ini `alsctl_rig` / `alsctl_prescription`: a
  shipped example's name or a file; the shipped `sim` and `li_als` otherwise). A project
  overrides either by defining a fixture of the same name.
- `sim_hal`: the simulated rig, connected, driven at the HAL (`HalRig`).
- `serial_pair`: the simulated firmware behind a real serial link on a pty, protocol v3,
  lockstep clock, `SerialHal` connected to it (`SerialRig`).
- `treatment`: starts the real controller on a treatment (`Run`), from the start or from a
  phase; every run still going is ended after the test.

This module imports only pytest and pytest-asyncio when pytest loads it: the kit itself is
imported by the first fixture used, so the plugin costs nothing to the test runs of an
environment that never use it. Without pytest-asyncio the fixtures fail, saying what to
install, instead of breaking every pytest run of the environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

try:
    from pytest_asyncio import fixture as asyncio_fixture
except ImportError:  # alsctl installed without its `testing` extra
    asyncio_fixture = None  # type: ignore[assignment]  # absent: the fixtures say so when used

if TYPE_CHECKING:
    from controller.config.prescription import Prescription
    from controller.config.rig import RigConfig
    from controller.testing.hal_rig import HalRig
    from controller.testing.rigs import SerialRig
    from controller.testing.treatments import Treatments

MISSING = (
    "the alsctl fixtures need pytest-asyncio: pip install 'alsctl[testing]'"
    " (or pytest-asyncio itself)"
)


def _async_fixture(func: Callable[..., Any]) -> Any:
    """`pytest_asyncio.fixture`, or, without pytest-asyncio, a fixture that says so."""
    if asyncio_fixture is not None:
        return asyncio_fixture(func)

    def missing() -> None:
        pytest.fail(MISSING, pytrace=False)

    missing.__name__ = func.__name__
    missing.__doc__ = func.__doc__
    return pytest.fixture(name=func.__name__)(missing)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("alsctl", "alsctl testing kit (docs/testing.md)")
    group.addoption(
        "--alsctl-rig",
        metavar="NAME|FILE",
        default=None,
        help="the rig the alsctl fixtures use: a shipped example (sim, bench) or a rig file"
        " (default: ini alsctl_rig, else sim)",
    )
    group.addoption(
        "--alsctl-prescription",
        metavar="NAME|FILE",
        default=None,
        help="the prescription the alsctl fixtures use: a shipped example (pe, li_als ...)"
        " or a file (default: ini alsctl_prescription, else li_als)",
    )
    parser.addini("alsctl_rig", "the alsctl fixtures' rig: a shipped name or a file", default="sim")
    parser.addini(
        "alsctl_prescription",
        "the alsctl fixtures' prescription: a shipped name or a file",
        default="li_als",
    )


def _setting(config: pytest.Config, name: str) -> str:
    given = config.getoption(f"--{name.replace('_', '-')}")
    return str(given if given is not None else config.getini(name))


@pytest.fixture
def alsctl_rig(pytestconfig: pytest.Config) -> RigConfig:
    """The rig the other fixtures run on (`--alsctl-rig`, ini `alsctl_rig`; `sim`)."""
    from controller.testing import files

    return files.rig(_setting(pytestconfig, "alsctl_rig"))


@pytest.fixture
def alsctl_prescription(pytestconfig: pytest.Config) -> Prescription:
    """The prescription `treatment()` runs when given none, and the patient and bags the
    simulated firmware is built for (`--alsctl-prescription`, ini; `li_als`)."""
    from controller.testing import files

    return files.prescription(_setting(pytestconfig, "alsctl_prescription"))


@_async_fixture
async def sim_hal(
    alsctl_rig: RigConfig, alsctl_prescription: Prescription
) -> AsyncIterator[HalRig]:
    """The simulated rig, connected at the HAL: `arm()`, `next_sample()`, `run_for(s)`,
    `until(condition, within_s=...)`, `faults`, `hal`. Costs about a millisecond."""
    from controller.testing.rigs import sim_rig

    async with sim_rig(alsctl_rig, alsctl_prescription) as rig:
        yield rig


@_async_fixture
async def serial_pair(
    alsctl_rig: RigConfig, alsctl_prescription: Prescription
) -> AsyncIterator[SerialRig]:
    """The simulated firmware (`alsctl firmware-sim`'s server, lockstep clock) on a new pty,
    `SerialHal` connected to it: as `sim_hal`, plus `server` and `port`. A few ms."""
    from controller.testing.rigs import serial_pair as pair

    async with pair(alsctl_rig, alsctl_prescription) as rig:
        yield rig


@_async_fixture
async def treatment(
    alsctl_rig: RigConfig, alsctl_prescription: Prescription
) -> AsyncIterator[Treatments]:
    """`run = await treatment(prescription, start="exchange", scenario=..., ...)`: the
    controller on a treatment, held at its first cycle (see `Treatments.__call__`); runs
    still going after the test are interrupted, the rig commanded safe."""
    from controller.testing.treatments import Treatments

    runs = Treatments(alsctl_rig, alsctl_prescription)
    try:
        yield runs
    finally:
        await runs.aclose()
