"""The `alsctl` command line.

Every AlsError becomes one line per problem on stderr and the error's exit code; a traceback
is only ever printed for a bug, never for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from controller import sizing
from controller.config import MODELS, Prescription, Scenario, load
from controller.errors import AlsError, ConfigError


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60.0)
    hours, mins = divmod(minutes, 60)
    return f"{hours} h {mins:02d} min" if hours else f"{mins} min"


def describe_plan(p: Prescription) -> list[str]:
    """The treatment plan as an operator reads it before starting."""
    plan = sizing.plan(p)
    lines = [
        f"  mode {p.mode}; patient {p.patient.weight_kg:g} kg, Hct {p.patient.hematocrit:.2f}"
        f" -> plasma volume {plan.plasma_volume_ml:.0f} mL (Kaplan)",
    ]
    if plan.exchange_volume_ml > 0:
        lines.append(
            f"  exchange {plan.exchange_volume_ml:.0f} mL = {plan.exchange_pv:.2f} PV"
            f" -> expected removal of a plasma-confined solute {plan.expected_removal:.0%}"
        )
    else:
        lines.append("  no plasma exchange: the loop runs from the start")
    flows = f"  flows (mL/min): blood {p.blood_flow_ml_min:g}, plasma {round(p.plasma_flow, 1):g}"
    if p.has_loop:
        flows += f", loop {round(p.loop_flow, 1):g}"
    if p.filtrate_flow:
        flows += f", filtrate {p.filtrate_flow:g}, substitution {round(p.substitution_flow, 1):g}"
    lines.append(flows)
    if p.adsorber_train:
        lines.append("  adsorbers: " + " -> ".join(p.adsorber_train))
    lines.append(f"  {'phase':<18}{'duration':>12}  note")
    lines += [f"  {ph.name:<18}{_duration(ph.duration_s):>12}  {ph.note}" for ph in plan.phases]
    lines.append(f"  {'total':<18}{_duration(plan.total_s):>12}")
    return lines


def cmd_validate(args: argparse.Namespace) -> int:
    failed: list[ConfigError] = []
    for path in args.files:
        try:
            model = load(path, args.kind)
        except ConfigError as exc:
            failed.append(exc)
            continue
        kind = next(k for k, m in MODELS.items() if isinstance(model, m))
        print(f"{path}: {kind} OK")
        if isinstance(model, Prescription):
            print("\n".join(describe_plan(model)))
        elif isinstance(model, Scenario):
            for ev in model.events:
                print(f"  t={ev.at_s:g} s  {ev.fault} {ev.params or ''}".rstrip())
    for exc in failed:
        for line in exc.lines():
            print(line, file=sys.stderr)
    return ConfigError.exit_code if failed else 0


def cmd_schema(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for kind, model in MODELS.items():
        path = out / f"{kind}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(by_alias=True), indent=2) + "\n")
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alsctl",
        description="Li-ALS bench-rig and simulation controller. Not for clinical use.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check rig, prescription and scenario files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--kind", choices=sorted(MODELS), help="the kind, if not told by the content")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="write the JSON Schemas of the config models")
    p.add_argument("--out", default="docs/schemas", help="folder (default docs/schemas)")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_code
    except AlsError as exc:
        print(f"alsctl: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
