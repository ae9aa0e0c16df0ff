"""The `alsctl` command line.

Every AlsError becomes one line per problem on stderr and the error's exit code; a traceback
is only ever printed for a bug, never for bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from controller import examples
from controller.config import (
    MODELS,
    Prescription,
    RigConfig,
    Scenario,
    load,
    load_prescription,
    load_rig,
    load_scenario,
)
from controller.config.checklist import GateAnswers
from controller.config.compat import require_pair
from controller.config.loading import issues_from
from controller.errors import AlsError, ConfigError, ConfigIssue, printable
from controller.fsm import plan as sizing
from controller.outcome import EXIT_CODES, Outcome
from controller.safety.gate import QUESTIONS
from controller.summary import Summary

SCHEMAS: dict[str, type] = {**MODELS, "summary": Summary}
DEFAULT_JOURNAL = "out/journal.db"
DEFAULT_USERS = "out/dashboard-users.json"
#: Trend rows a report plots at most (about one per pixel column of its plots, twice over)
PLOT_POINTS = 2000
#: `alsctl run` exit status when it was interrupted before (or outside) a treatment
INTERRUPTED_EXIT = EXIT_CODES[Outcome.INTERRUPTED]

RUN_EPILOG = """examples:
  alsctl run --sim --checklist clear                  the shipped Li-ALS prescription, simulated
  alsctl run --sim --checklist clear --prescription pe --speed 60
  alsctl run --sim --checklist clear --scenario air_bubble --auto-resume 5
  alsctl run --rig my-bench.yaml --port /dev/ttyUSB0 --prescription rx.yaml
  alsctl run --resume last --port /dev/ttyUSB0        continue an interrupted serial session

--rig, --prescription, --checklist and --scenario take a file, or the name of a shipped
example (alsctl init DIR copies them out for editing).

exit status: 0 completed; 3 stopped (operator, remote or the pre-start gate ended it before
the prescription was done); 4 ended in alarm; 5 fault; 6 interrupted (Ctrl-C, SIGTERM);
2 a file or argument that cannot be used; 1 any other error before or outside a treatment.
"""


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
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
    """Each file alone, then every rig with every prescription given with it (any order):
    a pair that cannot run together fails here, not minutes into a treatment."""
    failed: list[ConfigError] = []
    rigs: list[tuple[str, RigConfig]] = []
    prescriptions: list[tuple[str, Prescription]] = []
    for path in args.files:
        try:
            model = load(path, args.kind)
        except ConfigError as exc:
            failed.append(exc)
            continue
        kind = next(k for k, m in MODELS.items() if isinstance(model, m))
        print(f"{printable(path)}: {kind} OK")
        if isinstance(model, Prescription):
            prescriptions.append((path, model))
            print("\n".join(describe_plan(model)))
        elif isinstance(model, RigConfig):
            rigs.append((path, model))
        elif isinstance(model, Scenario):
            for ev in model.events:
                when = f"t={ev.at_s:g} s" if ev.at_s is not None else f"{ev.phase}+{ev.after_s:g} s"
                print(f"  {when}  {ev.fault} {ev.params or ''}".rstrip())
    for rig_path, rig in rigs:
        for rx_path, rx in prescriptions:
            try:
                require_pair(rig, rx, rig_path, rx_path)
            except ConfigError as exc:
                failed.append(exc)
                continue
            print(f"{printable(rx_path)} on rig {printable(rig_path)}: OK")
    for error in failed:
        for line in error.lines():
            print(line, file=sys.stderr)
    return ConfigError.exit_code if failed else 0


def cmd_schema(args: argparse.Namespace) -> int:
    """One kind's JSON Schema to stdout, or every kind into the folder given with --out."""

    def text(model: type[BaseModel]) -> str:
        return json.dumps(model.model_json_schema(by_alias=True), indent=2) + "\n"

    if args.out is None:
        if args.kind is None:
            raise AlsError(f"name a kind ({', '.join(SCHEMAS)}) or give --out FOLDER for all")
        sys.stdout.write(text(SCHEMAS[args.kind]))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for kind, model in SCHEMAS.items():
        if args.kind in (None, kind):
            path = out / f"{kind}.schema.json"
            path.write_text(text(model))
            print(path)
    return 0


def _session(text: str) -> int:
    """A session number; 'last' is 0, resolved against the journal."""
    if text == "last":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a session number or 'last', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"session numbers start at 1, got {value}")
    return value


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

    from controller.app import RunOptions, run_treatment
    from controller.journal import Journal
    from controller.progress import Progress

    if args.resume is not None:
        return _resume(args)
    rig_path = examples.resolve("rig", args.rig)
    rig = load_rig(rig_path)
    rx_path = examples.resolve("prescription", args.prescription)
    rx = load_prescription(rx_path)
    require_pair(rig, rx, str(rig_path), str(rx_path))  # the pair as `alsctl validate` checks it
    scenario = load_scenario(examples.resolve("scenario", args.scenario)) if args.scenario else None
    backend, port = _backend(args, rig, rig_path)
    answers = _gate_answers(args.checklist)
    rig = rig.model_copy(update={"backend": backend})
    bridge = _mqtt_bridge(args, rig)
    if args.hold and (bridge is None or "start_treatment" not in rig.mqtt.commands):
        from controller.mqtt.broker import MqttConfigError

        raise MqttConfigError(
            "--hold waits for a remote start: give --mqtt, and list start_treatment in the"
            " rig file's mqtt.commands (remote start is off by default)"
        )
    console = _wants_console(args)
    progress = Progress(sys.stdout, live=not args.plain and sys.stdout.isatty() and not console)
    where = f" on {port}" if port else ""
    with Journal(args.journal) as journal:  # a journal that cannot be written: refused here
        print(f"alsctl run: {rx.name} ({rx.mode}) on {backend} rig {rig.rig_id}{where}")
        opts = RunOptions(
            backend=backend,
            port=port,
            scenario=scenario,
            speed=args.speed,
            gate=answers,
            auto_resume_s=args.auto_resume,
            journal=journal,
            hold_at_ready=args.hold,
            handle_signals=True,
        )
        bridges = [] if bridge is None else [bridge]
        if console:
            summary = _run_with_console(rig, rx, opts, backend, bridges, progress, journal)
        else:
            journal.subscribe(progress.committed)
            opts.edges = [progress, *bridges]
            with progress:
                summary, _ = asyncio.run(run_treatment(rig, rx, opts))
    return _finish_run(args, progress, summary, summary.session)


def _wants_console(args: argparse.Namespace) -> bool:
    """The Textual console on a terminal (stdin and stdout), unless --plain."""
    return not args.plain and sys.stdout.isatty() and sys.stdin.isatty()


def _run_with_console(
    rig: RigConfig,
    rx: Prescription,
    opts: Any,
    backend: str,
    bridges: list[Any],
    progress: Any,
    journal: Any,
) -> Summary:
    """The treatment with the operator's console beside it; if the console ends first (Q,
    or an error in it), the run goes on with plain progress lines."""
    import asyncio

    from controller.app import run_treatment
    from controller.console.feed import Feed
    from controller.console.run import with_console

    feed = Feed(rig, backend)
    opts.edges = [feed, *bridges]

    def fallback() -> Any:
        journal.subscribe(progress.committed)
        return progress

    (summary, _), _why = asyncio.run(
        with_console(feed, lambda: run_treatment(rig, rx, opts), fallback)
    )
    return summary


def _backend(args: argparse.Namespace, rig: RigConfig, rig_path: Path) -> tuple[str, str | None]:
    """The backend the rig file names, unless the command line says otherwise; a serial
    rig needs a port, and nothing ever falls back to simulation by itself."""
    if args.sim:
        chosen = "sim"
    elif args.backend is not None:
        chosen = args.backend
    elif args.port is not None:
        chosen = "serial"  # a port is an explicit choice of a serial line
    else:
        chosen = rig.backend
    if chosen == "sim":
        if args.port is not None:
            raise AlsError("--port names a serial line: the simulated rig has none")
        return "sim", None
    port = args.port or rig.serial.url
    if not port:
        raise ConfigError(
            str(rig_path),
            [
                ConfigIssue(
                    "serial.url",
                    "(missing)",
                    "a serial rig needs its port",
                    "set serial.url in the rig file, or give --port",
                )
            ],
        )
    return chosen, port


def _mqtt_bridge(args: argparse.Namespace, rig: Any) -> Any:
    """The bridge for `--mqtt URL`; credentials from the environment or the rig file."""
    if not args.mqtt:
        return None
    import logging

    from controller.mqtt.bridge import MqttBridge
    from controller.mqtt.broker import Broker

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    broker = Broker.from_url(args.mqtt, rig.mqtt, default_user=rig.rig_id)
    print(f"mqtt: {broker.where} as {broker.username}, topics als/{rig.rig_id}/...")
    return MqttBridge(broker, rig.mqtt, rig.rig_id)


def _finish_run(
    args: argparse.Namespace, progress: Any, summary: Summary, session: int | None
) -> int:
    """Summary lines, summary JSON, the report: the same after a run and after a resume.
    The exit status is the outcome's (EXIT_CODES): 0 only for a completed treatment."""
    if summary.pre_start is not None and not summary.pre_start.allowed:
        print("start refused: " + "; ".join(summary.pre_start.reasons))
    print("\n".join(progress.summary_lines(summary)))
    if args.summary_json:
        Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary_json).write_text(summary.model_dump_json(indent=2) + "\n")
        print(f"summary: {args.summary_json}")
    print(f"journal: {args.journal} (session {session})")
    if session is not None:
        try:
            print(f"report: {_write_report(args.journal, session, args.report)}")
        except Exception as exc:  # the treatment's outcome stands; the report can be made again
            print(f"report failed ({exc}); try: alsctl report {session}", file=sys.stderr)
    if summary.resume:
        print(f"resume with: {summary.resume}")
    return EXIT_CODES[summary.outcome]


def report_path(journal: str | Path, session: int) -> Path:
    """Beside the journal, named after it and the session: two journals in one folder never
    write over each other's reports."""
    journal = Path(journal)
    return journal.parent / f"{journal.stem}-report-{session}.html"


def _write_report(journal: str, session: int, out: str | None) -> Path:
    from controller import journal as jr
    from controller.report import render

    path = Path(out) if out else report_path(journal, session)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = jr.load(journal, session, trends=False)
    # what the plots can show, not every row: a 24 h session stays under 150 MB
    record.trends = jr.thinned_trends(journal, session, PLOT_POINTS)
    path.write_text(render(record))
    return path


def _resume(args: argparse.Namespace) -> int:
    """`alsctl run --resume SESSION --port URL`: continue a session whose controller died."""
    import asyncio

    from controller import journal as jr
    from controller.app import RunOptions, resume_treatment
    from controller.progress import Progress

    if not args.port:
        raise AlsError("--resume continues on the rig that outlived its controller: give --port")
    if args.resume == 0:
        args.resume = jr.latest_session(args.journal)
    record = jr.load(args.journal, args.resume, trends=False)
    progress = Progress(sys.stdout, live=not args.plain and sys.stdout.isatty())
    print(f"alsctl run: resuming session {args.resume} ({record.row.prescription}) on {args.port}")

    async def confirm(question: str) -> bool:
        print(question)
        if args.yes:
            print("  confirmed by --yes")
            return True
        if not sys.stdin.isatty():
            print("  not confirmed: no terminal to ask (use --yes)")
            return False
        return await asyncio.to_thread(_ask_yes, "resume?")

    bridge = _mqtt_bridge(args, RigConfig.model_validate(record.snapshots["rig"]))
    with jr.Journal(args.journal) as journal:
        journal.subscribe(progress.committed)
        opts = RunOptions(
            backend="serial",
            port=args.port,
            auto_resume_s=args.auto_resume,
            journal=journal,
            edges=[progress] if bridge is None else [progress, bridge],
        )
        with progress:
            summary, _ = asyncio.run(resume_treatment(record, opts, confirm))
    return _finish_run(args, progress, summary, args.resume)


def cmd_sessions(args: argparse.Namespace) -> int:
    """Every session with its outcome; running ones told from dead ones; the exact resume
    command only where a resume can succeed (the same rule the resume applies)."""
    from controller import journal as jr
    from controller.app import resume_refusal
    from controller.fsm.machine import leaf
    from controller.progress import clock

    rows = jr.sessions(args.journal)
    print(
        f"{'id':>4}  {'started (UTC)':<25} {'rig':<10} {'mode':<14} {'outcome':<12}"
        f" {'state':<16} {'rig time':>9}  prescription"
    )
    for r in rows:
        print(
            f"{r.id:>4}  {r.started_utc:<25} {r.rig_id:<10} {r.mode:<14} {r.status():<12}"
            f" {leaf(r.state):<16} {clock(r.rig_time_ms):>9}  {_safe_text(r.prescription)}"
        )
        if r.detail:
            print(f"{'':>6}{_safe_text(r.detail)}")
        if resume_refusal(r) is None:
            rig = jr.load(args.journal, r.id, trends=False).snapshots.get("rig") or {}
            port = (rig.get("serial") or {}).get("url") or "PORT"
            print(
                f"{'':>6}resume: alsctl run --resume {r.id} --port {port} --journal {args.journal}"
            )
    if not rows:
        print("no session yet")
    return 0


def _safe_text(text: str) -> str:
    """Free text from a file, without the control characters that could fake a line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def cmd_report(args: argparse.Namespace) -> int:
    from controller import journal as jr

    session = args.session if args.session != 0 else jr.latest_session(args.journal)
    print(_write_report(args.journal, session, args.out))
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    """A journaled session in the operator's console, read-only; on a non-terminal, the
    same in lines (a pipe or a log file gets no screen)."""
    from controller import journal as jr
    from controller.console.replay import from_journal, lines

    session = args.session if args.session != 0 else jr.latest_session(args.journal)
    feed = from_journal(jr.load(args.journal, session))
    if args.plain or not (sys.stdin.isatty() and sys.stdout.isatty()):
        for line in lines(feed, session):
            print(_safe_text(line))
        return 0
    from controller.console.app import ConsoleApp

    app = ConsoleApp(feed, read_only=True)
    app.note = f"read-only: session {session} from {args.journal}; Q leaves"
    app.run()
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Editable copies of the shipped examples, to start a rig or prescription from."""
    folder = Path(args.folder)
    written = examples.copy_to(folder)
    for path in written:
        print(path)
    kept = "; files already there were kept" if not written else ""
    print(f"{len(written)} example files in {folder}{kept}")
    return 0


def _gate_answers(path: str | None) -> GateAnswers | None:
    """From --checklist FILE, or asked at the terminal; None when neither is possible."""
    from controller.config.loading import load_checklist

    if path is not None:
        return load_checklist(examples.resolve("checklist", path))
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


def cmd_monitor(args: argparse.Namespace) -> int:
    import asyncio

    from controller.mqtt.broker import Broker, MqttConfigError
    from controller.mqtt.monitor import monitor

    broker = Broker.from_url(args.mqtt)
    if broker.username is None:
        raise MqttConfigError("no MQTT user: set ALSCTL_MQTT_USERNAME and ALSCTL_MQTT_PASSWORD")
    live = not args.plain and sys.stdout.isatty()
    asyncio.run(monitor(broker, args.rig, sys.stdout, live=live))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """The supervisors' web dashboard; `add-user NAME` to let a person sign in to it."""
    from controller.dashboard.users import Users

    users = Users(args.users)
    if args.dashboard_cmd == "add-user":
        return _add_dashboard_user(users, args.name)
    import asyncio

    from controller.dashboard.server import Dashboard, serve
    from controller.mqtt.broker import Broker, MqttConfigError

    if args.mqtt is None:
        raise MqttConfigError("alsctl dashboard: --mqtt URL is required")
    broker = Broker.from_url(args.mqtt)
    if broker.username is None:
        raise MqttConfigError("no MQTT user: set ALSCTL_MQTT_USERNAME and ALSCTL_MQTT_PASSWORD")
    if not users.names():
        raise MqttConfigError(
            f"no dashboard user in {args.users}: add one with"
            f" `alsctl dashboard add-user NAME --users {args.users}`"
        )
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise MqttConfigError(f"--listen {args.listen!r}: expected HOST:PORT")

    def ready(url: str) -> None:
        print(f"dashboard: {url} (broker {broker.where}, users {args.users})", flush=True)

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the server's normal end
        asyncio.run(serve(Dashboard(broker, users), host.strip("[]"), int(port), ready))
    return 0


def cmd_fleet(args: argparse.Namespace) -> int:
    """N simulated rigs on a broker (controller/fleet.py); `init` writes their MQTT users."""
    import asyncio

    from controller import fleet

    folder = Path(args.folder)
    if args.fleet_cmd == "init":
        fleet.init(folder, args.rigs)
        print(f"{args.rigs} rigs' MQTT users in {folder}; start the broker with:")
        print(f"  mosquitto -c {folder.resolve() / 'mosquitto.conf'}")
        return 0
    if args.mqtt is None:
        raise fleet.FleetError("alsctl fleet: --mqtt URL is required")
    speed = None if args.speed == "max" else float(args.speed)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the demo; journals are kept
        asyncio.run(
            fleet.run_fleet(
                args.rigs,
                args.mqtt,
                folder=folder,
                speed=speed,
                mix=fleet.load_mix(args.scenario_mix),
                telemetry_hz=args.telemetry_hz,
                prescription=args.prescription,
                once=args.once,
            )
        )
    return 0


def _add_dashboard_user(users: Any, name: str) -> int:
    import getpass

    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            print("alsctl: the two passwords differ; nothing changed", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    users.add(name, password)
    print(f"{name} may sign in to the dashboard ({users.path})")
    return 0


def _write_generated(text: str, out: str | None) -> int:
    """A generated document to stdout, or to the file given with --out (its path printed)."""
    if out is None or out == "-":
        sys.stdout.write(text)
    else:
        Path(out).write_text(text)
        print(out)
    return 0


def cmd_asyncapi(args: argparse.Namespace) -> int:
    from controller.mqtt.asyncapi import asyncapi_yaml

    return _write_generated(asyncapi_yaml(), args.out)


def cmd_diagram(args: argparse.Namespace) -> int:
    from controller.fsm.diagram import state_machine_markdown

    return _write_generated(state_machine_markdown(), args.out)


def _stderr_line(text: str) -> None:
    """One line of `firmware-sim`'s account; a closed stderr never stops the firmware."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


def cmd_firmware_sim(args: argparse.Namespace) -> int:
    import asyncio

    from firmware_sim.console_log import heartbeat_budget_warning
    from firmware_sim.server import serve

    rig = load_rig(examples.resolve("rig", args.rig))
    rx = load_prescription(examples.resolve("prescription", args.prescription))
    scenario = load_scenario(examples.resolve("scenario", args.scenario)) if args.scenario else None
    if scenario is not None and any(ev.phase is not None for ev in scenario.events):
        raise AlsError(
            "faults timed from a phase need the simulated rig in the controller's process"
            " (alsctl run --sim --scenario ...): the firmware does not know the phases"
        )
    # on the lockstep clock the controller's stalls stop the rig's clock too: no budget
    warning = (
        heartbeat_budget_warning(args.speed, rig.heartbeat_timeout_ms)
        if args.clock == "wall"
        else None
    )
    if warning is not None:
        print(warning, file=sys.stderr)
    pace = "real time" if args.speed == 1 else f"{args.speed:g}x real time"
    if args.clock == "lockstep":
        pace = f"lockstep clock (the controller grants rig time; {pace} without one)"
    print(f"# simulated firmware, {pace}; connect with: alsctl run --port <the line below>")
    asyncio.run(
        serve(
            rig,
            prescription=rx,
            scenario=scenario,
            device=args.device,
            tcp=args.tcp,
            speed=args.speed,
            clock=args.clock,
            log=None if args.quiet else _stderr_line,
        )
    )
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alsctl")
    except PackageNotFoundError:  # run from a tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alsctl",
        description="Li-ALS bench-rig and simulation controller. Not for clinical use.",
    )
    parser.add_argument("--version", action="version", version=f"alsctl {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check rig, prescription and scenario files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--kind", choices=sorted(MODELS), help="the kind, if not told by the content")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print (or write) the JSON Schemas of the models")
    p.add_argument("kind", nargs="?", choices=sorted(SCHEMAS), help="one kind, to stdout")
    p.add_argument("--out", metavar="FOLDER", help="write KIND.schema.json files here")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("init", help="copy the shipped example configs into a folder to edit")
    p.add_argument("folder", metavar="DIR")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "run",
        help="run a treatment on the simulated rig or a serial rig",
        description="Run one treatment: self-test, priming, the pre-start gate, the treatment"
        " the prescription names, rinse-back; journaled, ending with a summary and a report."
        " The rig file's backend decides where it runs (sim or serial); --sim, --backend and"
        " --port override it. Ctrl-C or SIGTERM puts the rig in its safe state and ends the"
        " run with its summary.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--sim", action="store_true", help="the simulated rig, whatever the rig file"
    )
    where.add_argument(
        "--backend", choices=("sim", "serial"), help="override the rig file's backend"
    )
    p.add_argument(
        "--port", metavar="URL", help="serial rig: /dev/ttyUSB0, a pty, socket://host:port"
    )
    p.add_argument("--rig", default=None, help=f"rig ({examples.describe('rig')})")
    p.add_argument(
        "--prescription",
        default=None,
        help=f"prescription ({examples.describe('prescription')})",
    )
    p.add_argument(
        "--scenario", help=f"fault scenario for the simulated rig ({examples.describe('scenario')})"
    )
    p.add_argument(
        "--speed", type=_speed, default=None, help="simulation: N x real time or max (default)"
    )
    p.add_argument("--summary-json", metavar="FILE", help="write the summary as JSON")
    p.add_argument(
        "--checklist",
        metavar="FILE",
        help="pre-start checklist (and override) for unattended runs; asked on a terminal"
        f" ({examples.describe('checklist').removeprefix('default: clear; ')})",
    )
    p.add_argument(
        "--auto-resume",
        type=float,
        metavar="S",
        help="unattended: acknowledge and resume an alarm S seconds after its conditions clear",
    )
    p.add_argument(
        "--plain",
        action="store_true",
        help="plain lines even on a terminal (default there: the operator's console)",
    )
    p.add_argument(
        "--journal", default=DEFAULT_JOURNAL, help=f"SQLite journal (default {DEFAULT_JOURNAL})"
    )
    p.add_argument("--report", metavar="FILE", help="HTML report (default: beside the journal)")
    p.add_argument(
        "--resume",
        type=_session,
        metavar="SESSION",
        help="continue a session whose controller died (serial rig; 'last' for the newest)",
    )
    p.add_argument("--yes", action="store_true", help="confirm a resume without asking")
    p.add_argument(
        "--mqtt",
        metavar="URL",
        help="publish to this broker (mqtt://HOST:PORT or mqtts://); credentials from"
        " ALSCTL_MQTT_USERNAME / ALSCTL_MQTT_PASSWORD or the rig file, never the URL",
    )
    p.add_argument(
        "--hold",
        action="store_true",
        help="after the pre-start checks, wait at ready for a remote start_treatment",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("monitor", help="a live view of the rigs publishing to a broker")
    p.add_argument("--mqtt", metavar="URL", required=True, help="mqtt://HOST:PORT or mqtts://")
    p.add_argument("--rig", metavar="ID", help="one rig (default: every rig)")
    p.add_argument("--plain", action="store_true", help="a line per change even on a terminal")
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser(
        "dashboard",
        help="the supervisors' web dashboard over every rig on a broker (add-user: who signs in)",
    )
    p.add_argument("--mqtt", metavar="URL", help="mqtt://HOST:PORT or mqtts://")
    p.add_argument(
        "--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="default 127.0.0.1:8080"
    )
    p.add_argument(
        "--users",
        default=DEFAULT_USERS,
        metavar="FILE",
        help=f"the dashboard's users and their hashed passwords (default {DEFAULT_USERS})",
    )
    dsub = p.add_subparsers(dest="dashboard_cmd", metavar="add-user")
    add = dsub.add_parser(
        "add-user", help="add a user (or change a password), asked twice or read from stdin"
    )
    add.add_argument("name")
    # either side of add-user; not given here, the one before it (or its default) stands
    add.add_argument("--users", default=argparse.SUPPRESS, metavar="FILE", help="as above")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser(
        "fleet", help="N simulated rigs publishing to a broker, each as its own user (init first)"
    )
    p.add_argument("--rigs", type=int, default=10, metavar="N", help="how many (default 10)")
    p.add_argument("--mqtt", metavar="URL", help="mqtt://HOST:PORT or mqtts://")
    p.add_argument("--folder", default="out/fleet", help="the rigs' users and journals")
    p.add_argument("--speed", default="60", help="N x real time, or max (default 60)")
    p.add_argument("--scenario-mix", metavar="FILE", help="YAML: mix: [{scenario, weight}]")
    p.add_argument("--telemetry-hz", type=float, metavar="HZ", help="override the rig file's")
    p.add_argument("--once", action="store_true", help="one treatment per rig, then end")
    p.add_argument(
        "--prescription", metavar="RX", help="the same for every rig (default: shipped, in turn)"
    )
    fsub = p.add_subparsers(dest="fleet_cmd", metavar="init")
    init = fsub.add_parser("init", help="write the rigs' MQTT users and a broker config")
    init.add_argument("--rigs", type=int, default=argparse.SUPPRESS, metavar="N")
    init.add_argument("--folder", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_fleet)

    p = sub.add_parser("asyncapi", help="print the AsyncAPI 3 description of the MQTT API")
    p.add_argument("--out", metavar="FILE", help="write it to FILE instead of stdout")
    p.set_defaults(func=cmd_asyncapi)

    p = sub.add_parser("sessions", help="list the journaled sessions")
    p.add_argument("--journal", default=DEFAULT_JOURNAL, help=f"default {DEFAULT_JOURNAL}")
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("report", help="write a session's self-contained HTML report")
    p.add_argument("session", type=_session, help="session number, or 'last'")
    p.add_argument("--journal", default=DEFAULT_JOURNAL, help=f"default {DEFAULT_JOURNAL}")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="default: beside the journal, named after it and the session"
        " (out/journal.db, session 1: out/journal-report-1.html)",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "console", help="open a journaled session in the operator's console, read-only"
    )
    p.add_argument("session", type=_session, help="session number, or 'last'")
    p.add_argument("--journal", default=DEFAULT_JOURNAL, help=f"default {DEFAULT_JOURNAL}")
    p.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    p.set_defaults(func=cmd_console)

    p = sub.add_parser("firmware-sim", help="serve the simulated firmware on a pty, device or TCP")
    p.add_argument("--rig", default=None, help=f"rig ({examples.describe('rig')})")
    p.add_argument(
        "--prescription",
        help=f"sizes the simulated patient and bags ({examples.describe('prescription')})",
    )
    p.add_argument(
        "--scenario", help=f"fault scenario, in rig time ({examples.describe('scenario')})"
    )
    on = p.add_mutually_exclusive_group()
    on.add_argument("--device", help="serve on this serial device instead of a new pty")
    on.add_argument("--tcp", metavar="HOST:PORT", help="serve on TCP (controller: socket://...)")
    p.add_argument(
        "--speed", type=float, default=1.0, help="rig time x wall time (default 1: real time)"
    )
    p.add_argument(
        "--clock",
        choices=("wall", "lockstep"),
        default="wall",
        help="wall (default): rig time follows the wall clock x speed; lockstep (tests,"
        " benches): it advances only as far as the controller grants (docs/protocol.md)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="only the port: no line (on stderr) per connection, HELLO, arm, limits, fault,"
        " safe state or reset",
    )
    p.set_defaults(func=cmd_firmware_sim)

    p = sub.add_parser("diagram", help="print the state diagram (Mermaid) of the machine")
    p.add_argument("--out", metavar="FILE", help="write it to FILE instead of stdout")
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
    except KeyboardInterrupt:  # outside a treatment (a prompt, a report): nothing to make safe
        print("alsctl: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
