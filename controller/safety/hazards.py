"""The hazard table of docs/spec.md 5.2 as data: what is detected, how soon, and what is done.

Delays and limits come from the rig's `AlarmLimits`, whose own bounds keep every one of them
within its safe range; nothing here can be configured outside them. `docs/safety.md` is
generated from this table and a measured run (bench/safety_latency.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controller.config.rig import AlarmLimits
from controller.safety.alarms import Priority


class Response(StrEnum):
    SAFE_STATE = "safe state: every pump stopped, venous clamp closed"
    STOP_BLOOD = "stop the blood pump (and with it the whole circuit)"
    REDUCE_PLASMA = "reduce the plasma pump; stop it if TMP stays high"
    STOP_PLASMA_SIDE = "stop plasma, loop and return pumps"
    SLOW_LOOP = "slow the loop, then stop it"
    STOP_EXCHANGE_FILTRATION = "stop exchange and filtration pumps"
    PAUSE_BAG_PUMP = "pause the pump that uses the bag"
    BLOOD_MIN_NO_REMOVAL = "blood flow to minimum, net fluid removal stopped"
    STOP_PUMP = "stop that pump and the pumps that depend on it"
    WORST_READING = "treated as the worst reading of its hazard"
    TEMP = "alarm; above the cut-off stop the return pump"
    ALARM_STATE = "alarm state; the firmware is safe through its heartbeat watchdog"
    NOTIFY = "alarm only: the treatment goes on; the operator continues or stops with rinse-back"
    VALVE = "plasma route: stop the plasma side; venous clamp: safe state, clamp the line by hand"
    STOP_LOOP = "stop the loop, filtration and substitution"


@dataclass(frozen=True, slots=True)
class Hazard:
    id: str
    title: str
    detection: str
    priority: Priority
    delay_s: float
    clear_s: float
    latched: bool
    response: Response
    #: who acts first: "firmware" (its own limits, within one tick) or "controller"
    first_layer: str


def hazard_table(a: AlarmLimits, link_lost_ms: int = 300) -> tuple[Hazard, ...]:
    h = Priority.HIGH
    m = Priority.MEDIUM
    return (
        Hazard("air_return", "air in return line", "`air_return` detector", h, 0, 0, True,
               Response.SAFE_STATE, "firmware"),
        Hazard("return_low", "return line disconnected",
               f"`return` below {a.return_low_mmhg:g} mmHg, or {a.return_window_mmhg:g} mmHg "
               "below its expected level at the present flow for 2 s (a needle out); after a "
               f"resume, {a.resume_check_s:g} s at minimum flow before full flow, "
               "while blood flows", h, 0, 2, True, Response.SAFE_STATE, "firmware"),
        Hazard("return_high", "return line occluded",
               f"`return` above {a.return_high_mmhg:g} mmHg", h, 0, 2, True,
               Response.SAFE_STATE, "firmware"),
        Hazard("access_low", "access problem", f"`access` below {a.access_low_mmhg:g} mmHg", h,
               0, 2, True, Response.STOP_BLOOD, "firmware"),
        Hazard("separator_tmp", "separator TMP high (hemolysis risk)",
               f"TMP above {a.separator_tmp_high_mmhg:g} mmHg; high after "
               f"{a.separator_tmp_stop_s:g} s", m, 1, 5, False, Response.REDUCE_PLASMA,
               "controller"),
        Hazard("blood_leak", "blood leak / hemolysis", "`blood_leak` detector", h, 0, 0, True,
               Response.STOP_PLASMA_SIDE, "firmware"),
        Hazard("clotting", "adsorber or filter clotting",
               f"adsorber drop above {a.adsorber_dp_high_mmhg:g} or filter TMP above "
               f"{a.filter_tmp_high_mmhg:g} mmHg", m, 2, 5, False, Response.SLOW_LOOP,
               "controller"),
        Hazard("fluid_imbalance", "fluid imbalance",
               f"encoder balance and scale balance differ by more than "
               f"{a.fluid_imbalance_ml:g} mL", h, 2, 5, True,
               Response.STOP_EXCHANGE_FILTRATION, "controller"),
        Hazard("net_balance", "patient fluid balance off its prescription",
               f"into minus out of the patient, by encoders or by scales, more than "
               f"{a.net_balance_ml:g} mL from what the prescription allows by now", h, 2, 5,
               True, Response.STOP_EXCHANGE_FILTRATION, "controller"),
        Hazard("bag", "bag empty or full",
               f"a bag in use below {a.bag_empty_g:g} g, or within {a.bag_full_margin_g:g} g "
               "of its capacity", m, 1, 3, False, Response.PAUSE_BAG_PUMP, "controller"),
        Hazard("hypotension", "hypotension", f"`map` below {a.map_low_mmhg:g} mmHg for "
               f"{a.map_delay_s:g} s", h, a.map_delay_s, 10, False,
               Response.BLOOD_MIN_NO_REMOVAL, "controller"),
        Hazard("pump_fault", "pump fault",
               f"measured flow differs from command by more than "
               f"{a.pump_mismatch_fraction:.0%} for {a.pump_mismatch_s:g} s", h,
               a.pump_mismatch_s, 2, True, Response.STOP_PUMP, "controller"),
        Hazard("sensor_fault", "sensor fault",
               "a reading out of range, missing, or unchanged while it should move; or "
               "pre_separator and return off the drop the blood flow sets, by 15 mmHg for 5 s",
               h, 0.5, 2,
               True, Response.WORST_READING, "controller"),
        Hazard("plasma_temp", "plasma too cold/hot",
               f"`plasma_temp` outside {a.plasma_temp_low_c:g}-{a.plasma_temp_high_c:g} degC; "
               f"above {a.plasma_temp_cutoff_c:g} degC high", m, 2, 5, False, Response.TEMP,
               "controller"),
        Hazard("link_lost", "link lost", f"no frame from the firmware for {link_lost_ms} ms",
               h, 0, 0, False, Response.ALARM_STATE, "controller"),
        Hazard("valve_fault", "a valve does not move",
               "a valve's position sensor differs from its command (in the safe state: the "
               "clamp not closed) for 0.5 s", h, 0.5, 2, True, Response.VALVE, "controller"),
        Hazard("bag_valve", "double-chamber bag valve leaking",
               "the inner chamber fills while the loop is stopped (5 g in 30 s): plasma comes "
               "back through the one-way valve, unpurified", m, 0, 5, False, Response.NOTIFY,
               "controller"),
        Hazard("filter_rupture", "hemofilter membrane rupture",
               f"filter TMP below {a.filter_tmp_low_mmhg:g} mmHg while filtrate is drawn: "
               "nothing holds the plasma back", h, 3, 5, True, Response.STOP_LOOP,
               "controller"),
        Hazard("journal_unavailable", "journal cannot be written",
               "a journal commit failed (full disk, file size limit, a lock held past the busy"
               " timeout); records go to a fallback file until it recovers", h, 0, 0, True,
               Response.NOTIFY, "controller"),
    )  # fmt: skip
