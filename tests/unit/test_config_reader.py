"""Files that would hurt or fool the loader are refused with one line each and exit 2:
duplicate keys, aliases, deep nesting, FIFOs and devices, oversize files; and what is
printed about a bad file is bounded and never carries a raw control character."""

import os
from pathlib import Path

import pytest

from controller.cli import main
from controller.config.reader import MAX_DEPTH, MAX_FILE_BYTES
from controller.errors import MAX_LINE_CHARS, MAX_LINES

RX = "name: rx\nmode: pe\nexchange_volume_pv: 1.0\n"
CLEAR = (
    "checklist:\n"
    "  severe_active_bleeding: true\n"
    "  uncontrolled_map_below_65: false\n"
    "  severe_allergy_with_shock: false\n"
)


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["validate", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err.strip().splitlines()


def write(tmp_path: Path, text: str, name: str = "f.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


DUPLICATES = {
    "prescription": (
        RX + "patient:\n  weight_kg: 70\n  hematocrit: 0.3\n  weight_kg: 20\n",
        "patient.weight_kg: line 5 and line 7",
    ),
    "checklist": (CLEAR + "  severe_active_bleeding: false\n", "checklist.severe_active_bleeding"),
    "rig": ("rig_id: a\npumps:\n  blood: {max_rate: 100, max_rate: 200}\n", "pumps.blood.max_rate"),
    "scenario": (
        "name: s\nevents:\n  - {at_s: 1, fault: blood_leak}\n  - at_s: 2\n"
        "    fault: air_bubble\n    at_s: 3\n",
        "events.1.at_s: line 4 and line 6",
    ),
}


@pytest.mark.parametrize("kind", sorted(DUPLICATES))
def test_a_key_given_twice_is_refused_naming_it_and_both_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    text, expected = DUPLICATES[kind]
    path = write(tmp_path, text)
    code, err = validate(capsys, str(path))
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"{path}: {expected}"), err[0]
    assert "the same key twice" in err[0]


def test_duplicate_keys_are_all_named_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, RX + "mode: li_als\npatient: {weight_kg: 70, hematocrit: 0.3}\n")
    _, err = validate(capsys, str(path))
    assert err == [
        f"{path}: mode: line 2 and line 4 -> the same key twice: YAML would keep the last one"
        " without a word (give each key once)"
    ]
    path = write(tmp_path, "a: {true: 1, yes: 2}\nb: 1\nb: 2\n")
    _, err = validate(capsys, "--kind", "rig", str(path))
    assert [line.split(" -> ")[0] for line in err] == [
        f"{path}: a.yes: line 1, column 5 and line 1, column 14",
        f"{path}: b: line 2 and line 3",
    ]


def test_a_run_refuses_a_checklist_with_a_key_given_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The case of the issue: `true` then `false` passed the pre-start gate."""
    checklist = write(tmp_path, CLEAR + "  severe_active_bleeding: false\n", "c.yaml")
    code = main(
        ["run", "--sim", "--checklist", str(checklist), "--journal", str(tmp_path / "j.db")]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert f"{checklist}: checklist.severe_active_bleeding: line 2 and line 5" in captured.err
    assert not (tmp_path / "j.db").exists()


def test_aliases_are_refused_so_an_alias_bomb_costs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    path = write(tmp_path, "name: lol\n" + "\n".join(lines) + "\n")
    code, err = validate(capsys, "--kind", "prescription", str(path))
    assert code == 2
    assert err == [
        f"{path}: line 3, column 10: *a0 -> YAML aliases are not allowed in config files"
        " (write the value out in full)"
    ]


@pytest.mark.parametrize(
    "text",
    ["a: " + "[" * 3000 + "]" * 3000 + "\n", "".join(f"{'  ' * i}k{i}:\n" for i in range(300))],
    ids=["lists", "mappings"],
)
def test_deep_nesting_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    code, err = validate(capsys, "--kind", "rig", str(write(tmp_path, text)))
    assert code == 2
    assert len(err) == 1
    assert f"nested deeper than {MAX_DEPTH} levels" in err[0]


def test_a_fifo_is_refused_without_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "rx.yaml"
    os.mkfifo(fifo)
    code, err = validate(capsys, str(fifo))
    assert code == 2
    assert err == [f"{fifo}: (file): {fifo} -> not a regular file (a FIFO) (give a YAML file)"]


@pytest.mark.parametrize(
    ("path", "kind"), [("/dev/zero", "a character device"), (".", "a directory")]
)
def test_devices_and_directories_are_refused(
    capsys: pytest.CaptureFixture[str], path: str, kind: str
) -> None:
    code, err = validate(capsys, path)
    assert code == 2
    assert err == [f"{path}: (file): {path} -> not a regular file ({kind}) (give a YAML file)"]


def test_an_oversize_file_is_refused_before_it_is_parsed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "name: '" + "x" * MAX_FILE_BYTES + "'\n")
    code, err = validate(capsys, str(path))
    assert code == 2
    assert err == [
        f"{path}: (file): {MAX_FILE_BYTES + 9} bytes -> too large for a config file (at most 1 MB)"
    ]


def test_a_huge_value_gives_a_bounded_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, RX + "patient: {weight_kg: 70, hematocrit: 0.3}\nrig: " + "y" * 900_000)
    code, err = validate(capsys, str(path))
    assert code == 2
    assert len(err) == 1
    assert len(err[0]) < MAX_LINE_CHARS + 100
    assert err[0].startswith(f"{path}: rig: 'yyyy")
    assert "(900000 characters)" in err[0]


def test_thousands_of_unknown_keys_give_a_bounded_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "".join(f"k{i}: 1\n" for i in range(3000)))
    code, err = validate(capsys, "--kind", "rig", str(path))
    assert code == 2
    assert len(err) == MAX_LINES + 1
    assert err[-1] == f"{path}: ... and {3000 - MAX_LINES} more problems like these"


def test_control_characters_from_a_file_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = "\x1b[2K\rfinal state: done (completed)"
    path = tmp_path / "rx.yaml"
    path.write_text(
        f'name: "{fake.encode("unicode_escape").decode()}"\n'
        f'"bad\\u202ekey\\x1b": 1\n'
        + RX.removeprefix("name: rx\n")
        + "patient: {weight_kg: 70, hematocrit: 0.3}\n"
    )
    code, err = validate(capsys, str(path))
    assert code == 2
    assert len(err) == 2
    text = "\n".join(err)
    assert not any(c in text for c in "\x1b\r\u202e")
    assert "\\x1b[2K\\rfinal state" in text
    assert "bad\\u202ekey\\x1b: 1 -> unknown field" in text


def test_merge_keys_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "patient:\n  <<: {weight_kg: 70}\n  weight_kg: 20\n")
    code, err = validate(capsys, "--kind", "prescription", str(path))
    assert code == 2
    assert err == [
        f"{path}: line 2, column 3: << -> YAML merge keys are not allowed in config files"
        " (write the keys out in full)"
    ]
