"""The example files shipped with alsctl: rigs, prescriptions, checklists, scenarios, Mosquitto.

They are package data, so `pip install alsctl` followed by `alsctl run --sim` works from any
directory: a `--rig`, `--prescription`, `--checklist` or `--scenario` that is not a file is
looked up here by name (`--prescription pe` is `prescriptions/pe.yaml`). In a checkout the
repository's `config/` is a link to this folder, so the README's paths and these are one set
of files. `alsctl init DIR` copies them out for editing.

The shipped mosquitto.conf names its files relative to the repository root, where the README
starts it. A copy lives elsewhere and is started from anywhere, so `alsctl init` writes its
mosquitto.conf with absolute paths into the copied folder instead (`broker_config`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent
#: The file kinds and the folder each lives in.
FOLDERS = {
    "rig": "rigs",
    "prescription": "prescriptions",
    "scenario": "scenarios",
    "checklist": "checklists",
}
MOSQUITTO = ROOT / "mosquitto"
#: The folder of an `alsctl init` copy where its broker keeps persistent sessions.
PERSISTENCE = "data"
DEFAULTS = {"rig": "sim", "prescription": "li_als", "checklist": "clear"}


def names(kind: str) -> list[str]:
    """The shipped examples of one kind, by the name `resolve` takes."""
    return sorted(p.stem for p in (ROOT / FOLDERS[kind]).glob("*.yaml"))


def resolve(kind: str, given: str | None) -> Path:
    """A path as given when it names a file, else the shipped example of that name.

    A name that is neither stays as given, so the loader's "no such file" names it.
    """
    if given is None:
        given = DEFAULTS[kind]
    path = Path(given)
    if path.is_file() or path.suffix or "/" in given:
        return path
    shipped = ROOT / FOLDERS[kind] / f"{given}.yaml"
    return shipped if shipped.is_file() else path


def describe(kind: str) -> str:
    """For --help: the default and the names a user may give instead of a path."""
    default = DEFAULTS.get(kind)
    shipped = ", ".join(names(kind))
    return (f"default: {default}; " if default else "") + f"shipped: {shipped}; or a file"


def copy_to(folder: Path) -> list[Path]:
    """Copy every example into `folder` (its own `rigs/`, `prescriptions/` ...); never
    overwrites a file that is there already, and returns what it wrote."""
    written: list[Path] = []
    for sub in (*FOLDERS.values(), "mosquitto"):
        for src in sorted((ROOT / sub).iterdir()):
            if src.name.startswith((".", "_")) or not src.is_file():
                continue
            dest = folder / sub / src.name
            if dest.exists():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src == MOSQUITTO / "mosquitto.conf":
                dest.write_text(broker_config(src.read_text(), dest.parent))
            else:
                shutil.copyfile(src, dest)
            written.append(dest)
    # Mosquitto 2.0 does not create it, and a missing one fails only when it saves
    (folder / "mosquitto" / PERSISTENCE).mkdir(parents=True, exist_ok=True)
    return written


def broker_config(shipped: str, folder: Path) -> str:
    """The shipped mosquitto.conf for a copy in `folder`: its password file, ACL and
    persistence folder as absolute paths there, so `mosquitto -c FILE` works from any
    directory (the shipped relative paths work only from the repository root)."""
    folder = folder.resolve()
    replaced = {
        "password_file": f"password_file {folder / 'passwd'}",
        "acl_file": f"acl_file {folder / 'acl'}",
        "persistence_location": f"persistence_location {folder / PERSISTENCE}/",
    }
    lines = [
        "# Written by `alsctl init`: the paths below are absolute, so start it from any",
        f"# directory, as yourself (not root): mosquitto -c {folder / 'mosquitto.conf'}",
        "# What follows is the shipped file; its notes on relative paths and out/mosquitto/",
        "# are about the repository's copy.",
    ]
    for line in shipped.splitlines():
        lines.append(replaced.get(line.split(" ", 1)[0], line))
    return "\n".join(lines) + "\n"
