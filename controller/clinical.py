"""Pure clinical formulas, checked against published figures on their own (docs/validation.md).

Kaplan's plasma volume: PV = 0.065 x weight x (1 - Hct); a solute confined to plasma after
exchanging V: C/C0 = exp(-V/PV), so 1.0 PV removes 63 %, 1.5 PV 78 %, 2.0 PV 86 %.
"""

from __future__ import annotations

import math


def plasma_volume_ml(weight_kg: float, hematocrit: float) -> float:
    """Kaplan's estimate of the plasma volume in mL."""
    return 0.065 * weight_kg * (1.0 - hematocrit) * 1000.0


def expected_removal(exchanged_ml: float, plasma_volume: float) -> float:
    """Fraction of a plasma-confined solute removed by exchanging `exchanged_ml` (0..1)."""
    if plasma_volume <= 0:
        raise ValueError("plasma volume must be positive")
    return 1.0 - math.exp(-exchanged_ml / plasma_volume)
