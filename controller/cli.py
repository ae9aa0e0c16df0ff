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

from pydantic import ValidationError

from controller import sizing
from controller.config import (
    MODELS,
    Prescription,
    Scenario,
    load,
    load_prescription,
    load_rig,
    load_scenario,
)
from controller.config.checklist import GateAnswers
from controller.config.loading import issues_from
from controller.errors import AlsError, ConfigError
from controller.safety.gate import QUESTIONS
from controller.summary import Summary

SCHEMAS: dict[str, type] = {**MODELS, "summary": Summary}
DEFAULT_RIG = "config/rigs/sim.yaml"
DEFAULT_PRESCRIPTION = "config/prescriptions/li_als.yaml"


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
    for kind, model in SCHEMAS.items():
        path = out / f"{kind}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(by_alias=True), indent=2) + "\n")
        print(path)
    return 0


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be a number or 'max', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"speed must be positive, got {text}")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from controller.progress import Progress
    from controller.runner import RunOptions, run_treatment

    rig = load_rig(args.rig)
    rx = load_prescription(args.prescription)
    scenario = load_scenario(args.scenario) if args.scenario else None
    answers = _gate_answers(args.checklist)
    backend = "serial" if args.port else "sim"
    if args.port:
        rig = rig.model_copy(update={"backend": "serial"})
    progress = Progress(sys.stdout, live=not args.plain and sys.stdout.isatty())
    print(f"alsctl run: {rx.name} ({rx.mode}) on {backend} rig {rig.rig_id}")
    opts = RunOptions(
        backend=backend,
        port=args.port,
        scenario=scenario,
        speed=args.speed,
        on_status=progress.status,
        on_transition=progress.transition,
        gate=answers,
        auto_resume_s=args.auto_resume,
    )
    with progress:
        summary, _ = asyncio.run(run_treatment(rig, rx, opts))
    if summary.pre_start is not None and not summary.pre_start.allowed:
        print("start refused: " + "; ".join(summary.pre_start.reasons))
    print("\n".join(progress.summary_lines(summary)))
    if args.summary_json:
        Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary_json).write_text(summary.model_dump_json(indent=2) + "\n")
        print(f"summary: {args.summary_json}")
    return 0 if summary.completed else 1


def _gate_answers(path: str | None) -> GateAnswers | None:
    """From --checklist FILE, or asked at the terminal; None when neither is possible."""
    from controller.config.loading import read_yaml

    if path is not None:
        try:
            return GateAnswers.model_validate(read_yaml(Path(path)))
        except ValidationError as exc:
            raise ConfigError(path, issues_from(GateAnswers, exc)) from None
    if not sys.stdin.isatty():
        return None  # the gate refuses: unattended runs must bring their checklist
    print("Pre-start checklist (consensus section 5); answer y or n.")
    answers = {name: _ask_yes(question) for name, question in QUESTIONS.items()}
    override = None
    if any(answers.values()) and _ask_yes("Override with informed consent?"):
        override = {
            "clinician": input("  clinician name: ").strip(),
            "reason": input("  reason: ").strip(),
            "consent_confirmed": _ask_yes("  informed consent confirmed?"),
            "mode": input("  mode (pe or adsorption) [pe]: ").strip() or "pe",
        }
    try:
        return GateAnswers.model_validate({"checklist": answers, "override": override})
    except ValidationError as exc:
        raise ConfigError("checklist", issues_from(GateAnswers, exc)) from None


def _ask_yes(question: str) -> bool:
    while True:
        answer = input(f"  {question} [y/n] ").strip().lower()
        if answer in ("y", "yes", "n", "no"):
            return answer.startswith("y")


def cmd_diagram(args: argparse.Namespace) -> int:
    from controller.fsm.diagram import state_machine_markdown

    text = state_machine_markdown()
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
        print(args.out)
    return 0


def cmd_firmware_sim(args: argparse.Namespace) -> int:
    import asyncio

    from firmware_sim.server import serve

    rig = load_rig(args.rig)
    rx = load_prescription(args.prescription) if args.prescription else None
    scenario = load_scenario(args.scenario) if args.scenario else None
    pace = "real time" if args.speed == 1 else f"{args.speed:g}x real time"
    print(f"# simulated firmware, {pace}; connect with: alsctl run --port <the line below>")
    asyncio.run(
        serve(
            rig,
            prescription=rx,
            scenario=scenario,
            device=args.device,
            tcp=args.tcp,
            speed=args.speed,
        )
    )
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

    p = sub.add_parser("run", help="run a treatment on the simulated rig or a serial rig")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--sim", action="store_true", help="the simulated rig (the default)")
    where.add_argument("--port", metavar="URL", help="serial rig: /dev/ttyUSB0, a pty, socket://")
    p.add_argument("--rig", default=DEFAULT_RIG, help=f"rig file (default {DEFAULT_RIG})")
    p.add_argument(
        "--prescription", default=DEFAULT_PRESCRIPTION, help=f"default {DEFAULT_PRESCRIPTION}"
    )
    p.add_argument("--scenario", help="fault scenario for the simulated rig")
    p.add_argument(
        "--speed", type=_speed, default=None, help="simulation: N x real time or max (default)"
    )
    p.add_argument("--summary-json", metavar="FILE", help="write the summary as JSON")
    p.add_argument(
        "--checklist",
        metavar="FILE",
        help="pre-start checklist (and override) for unattended runs; asked on a terminal",
    )
    p.add_argument(
        "--auto-resume",
        type=float,
        metavar="S",
        help="unattended: acknowledge and resume an alarm S seconds after its conditions clear",
    )
    p.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("firmware-sim", help="serve the simulated firmware on a pty, device or TCP")
    p.add_argument("--rig", default=DEFAULT_RIG, help=f"rig file (default {DEFAULT_RIG})")
    p.add_argument("--prescription", help="sizes the simulated patient and bags")
    p.add_argument("--scenario", help="fault scenario, in rig time")
    on = p.add_mutually_exclusive_group()
    on.add_argument("--device", help="serve on this serial device instead of a new pty")
    on.add_argument("--tcp", metavar="HOST:PORT", help="serve on TCP (controller: socket://...)")
    p.add_argument(
        "--speed", type=float, default=1.0, help="rig time x wall time (default 1: real time)"
    )
    p.set_defaults(func=cmd_firmware_sim)

    p = sub.add_parser("diagram", help="write the state diagram (Mermaid) from the machine")
    p.add_argument("--out", default="docs/state-machine.md", help="file, or - for stdout")
    p.set_defaults(func=cmd_diagram)
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
