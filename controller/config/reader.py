"""Reading a config file so that no file can hurt the reader, and none is misread.

A config file is small, flat YAML written by a person. Anything else is refused with one
line before it can cost time or memory: a path that is not a regular file (a FIFO would
block the open forever, `/dev/zero` would fill memory), a file over `MAX_FILE_BYTES`, YAML
aliases (a few lines of nested aliases expand to gigabytes: "billion laughs"), nesting
deeper than `MAX_DEPTH` (the composer recurses: a deep file ends in a RecursionError). A key
given twice in one mapping, which YAML resolves by keeping the last one silently (a
checklist answering `true` then `false`, a weight of 70 then 20), is refused naming the key
and both lines; so is a merge key (`<<:`), which overrides just as silently.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode

from controller.errors import ConfigError, ConfigIssue

#: No config file comes near this; a larger one is refused before it is read.
MAX_FILE_BYTES = 1_000_000
#: Nesting levels (mappings, lists and the scalars in them); config files use about five.
MAX_DEPTH = 20
#: Tags whose keys compare by value, as the dict they become does (`1`, `1.0` and `true`).
_VALUE_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool")


class Refused(yaml.YAMLError):
    """The YAML is well formed but not acceptable in a config file."""

    def __init__(self, mark: yaml.Mark | None, value: str, why: str, allowed: str) -> None:
        super().__init__(why)
        self.mark = mark
        self.value = value
        self.why = why
        self.allowed = allowed


def _at(node: Node, other: Node) -> str:
    """`line N`, with the column when the other key is on the same line."""
    line = node.start_mark.line + 1
    if line == other.start_mark.line + 1:
        return f"line {line}, column {node.start_mark.column + 1}"
    return f"line {line}"


def _where(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader without aliases, with a depth limit, that records duplicate keys.

    Duplicates are gathered (not raised at the first) so one run names them all; they are
    checked on the composed nodes, where each key still has its line.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str] = []
        self.duplicates: list[ConfigIssue] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]  # types-PyYAML: unannotated
            raise Refused(
                event.start_mark,
                f"*{event.anchor}",
                "YAML aliases are not allowed in config files",
                "write the value out in full",
            )
        label = index.value if isinstance(index, ScalarNode) else index
        if len(self._path) >= MAX_DEPTH:
            raise Refused(
                self.peek_event().start_mark,  # type: ignore[no-untyped-call]  # types-PyYAML: unannotated
                "(yaml)",
                f"nested deeper than {MAX_DEPTH} levels",
                "a config file is a few levels deep",
            )
        # the path of mapping values and list items, for naming a duplicate key
        self._path.append("" if label is None else str(label))
        try:
            return super().compose_node(parent, index)
        finally:
            self._path.pop()

    # types-PyYAML types `anchor` as a dict of nodes; PyYAML passes the anchor's name
    def compose_mapping_node(self, anchor: str | None) -> MappingNode:  # type: ignore[override]  # types-PyYAML: anchor is a str
        node = super().compose_mapping_node(anchor)  # type: ignore[arg-type]  # types-PyYAML: anchor is a str
        seen: dict[Any, Node] = {}
        for key, _ in node.value:
            if key.tag == "tag:yaml.org,2002:merge":
                # `<<:` lets a later key override a merged one without a word
                raise Refused(
                    key.start_mark,
                    "<<",
                    "YAML merge keys are not allowed in config files",
                    "write the keys out in full",
                )
            if not isinstance(key, ScalarNode):
                continue
            identity = self._identity(key)
            first = seen.setdefault(identity, key)
            if first is not key:
                where = ".".join(p for p in (*self._path[1:], key.value) if p)
                self.duplicates.append(
                    ConfigIssue(
                        where,
                        f"{_at(first, key)} and {_at(key, first)}",
                        "the same key twice: YAML would keep the last one without a word",
                        "give each key once",
                    )
                )
        return node

    def _identity(self, key: ScalarNode) -> Any:
        """What the key becomes in the dict, so keys a dict would merge count as one."""
        if key.tag in _VALUE_TAGS:
            try:
                return self.yaml_constructors[key.tag](self, key)
            except (ValueError, yaml.YAMLError):
                pass
        return (key.tag, key.value)


def _read_text(path: Path) -> str:
    """The file's text, only if it is a regular file of a config file's size."""
    src = str(path)

    def refuse(value: str, why: str, allowed: str = "") -> ConfigError:
        return ConfigError(src, [ConfigIssue("(file)", value, why, allowed)])

    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise refuse(src, f"not a regular file ({_kind(info.st_mode)})", "give a YAML file")
        if info.st_size > MAX_FILE_BYTES:
            raise refuse(f"{info.st_size} bytes", "too large for a config file", _limit())
        # a FIFO swapped in after the stat must not block the open; the fd is checked again
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise refuse(src, "file not found") from None
    except OSError as exc:
        raise refuse(src, f"cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise refuse(src, f"not a regular file ({_kind(mode)})", "give a YAML file")
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise refuse(f"over {MAX_FILE_BYTES} bytes", "too large for a config file", _limit())
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(f"byte {exc.start}", "not UTF-8 text") from None


def _limit() -> str:
    return f"at most {MAX_FILE_BYTES // 1_000_000} MB"


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a file")


def read_yaml(path: Path) -> Any:
    """Parse a config file; every way it can be unusable is a ConfigError, never a traceback."""
    src = str(path)
    loader = ConfigLoader(_read_text(path))
    try:
        data = loader.get_single_data()
    except Refused as exc:
        issue = ConfigIssue(_where(exc.mark), exc.value, exc.why, exc.allowed)
        raise ConfigError(src, [issue]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            src, [ConfigIssue(_where(mark), "(yaml)", f"broken YAML: {problem}")]
        ) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise ConfigError(src, loader.duplicates)
    return data
