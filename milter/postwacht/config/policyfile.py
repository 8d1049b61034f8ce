"""Reading a policy file: YAML with line numbers, checked against the JSON Schema.

Every problem names the file, the line, the key path and what was expected, so a
postmaster can fix a policy without reading code. All problems are collected, not just
the first.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import math
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from postwacht.core.text import printable

KeyPath = tuple[str | int, ...]
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_STR = "tag:yaml.org,2002:str"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it


@dataclass(frozen=True, order=True, slots=True)
class Problem:
    """One thing wrong with a policy, located for a person."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return printable(text, 2000)  # keys come from the file: no escape codes, one line


class PolicyError(Exception):
    """A policy that cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    """A parsed policy file: its data, where each key stands, and its bytes."""

    file: str
    data: Any
    lines: dict[KeyPath, int]
    raw: bytes
    problems: tuple[Problem, ...]
    """What the YAML structure and the schema found wrong; empty for a valid document."""

    def line(self, path: KeyPath) -> int:
        """Line of the key at `path`, or of its nearest parent that has one."""
        if not self.lines:  # the fast reader records none until a problem needs them
            self.lines.update(_lines_again(self))
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def problem(self, path: KeyPath, message: str) -> Problem:
        return Problem(self.file, self.line(path), format_path(path), message)


def format_path(path: KeyPath) -> str:
    """`("retired_domains", 0, "action")` -> `retired_domains[0].action`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@cache
def schema() -> dict[str, Any]:
    """The policy JSON Schema shipped with the package (also `policies/schema.json`)."""
    text = resources.files("postwacht.config").joinpath("schema.json").read_text(
        encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _fast_validator() -> Any:
    # Compiled to Python code: several times faster than jsonschema on a policy with
    # 100,000 domains, but it stops at the first error. So it only says "valid"; the
    # full list of problems comes from jsonschema.
    return fastjsonschema.compile(_without_refs(schema()))


_SUBSCHEMA = frozenset({"items", "additionalItems", "additionalProperties", "not", "if",
                        "then", "else", "contains", "propertyNames"})
_SUBSCHEMAS = frozenset({"allOf", "anyOf", "oneOf"})
_NAMED_SUBSCHEMAS = frozenset({"properties", "patternProperties", "dependencies"})


def _without_refs(node: Any) -> Any:
    """A copy of the schema with each `$ref` replaced by the definition it names.

    fastjsonschema calls a function per `$ref`, and each call formats an error prefix
    with `locals()` before it checks anything: 145,000 calls, 2 s for 100,000 domains.
    Draft 7 ignores a `$ref`'s sibling keywords, so the copy means the same (the schema
    has no recursive definitions).
    """
    if isinstance(node, list):
        return [_without_refs(item) for item in node]
    if not isinstance(node, dict):
        return copy.deepcopy(node)
    if "$ref" in node:
        ref: str = node["$ref"]
        return _without_refs(schema()["definitions"][ref.removeprefix("#/definitions/")])
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SUBSCHEMA or key in _SUBSCHEMAS:
            out[key] = _without_refs(value)
        elif key in _NAMED_SUBSCHEMAS and isinstance(value, dict):
            out[key] = {name: _without_refs(sub) for name, sub in value.items()}
        elif key != "definitions":
            out[key] = copy.deepcopy(value)  # fastjsonschema writes into the schema
    return out


MAX_BYTES = 16 * 1024 * 1024
"""Three times a 100,000-domain policy (about 5 MB); a bigger file is refused unread."""
MAX_DEPTH = 64
"""The schema nests six levels deep; deeper YAML would only exhaust libyaml's C stack."""
MAX_NODES = 1_000_000
"""YAML events or values: a 100,000-domain policy has about 550,000. Counted before
composing (a million nodes take about half a gigabyte) and again while aliases expand."""
MAX_ALIAS_NODES = 100_000
"""Values that aliases and merge keys may repeat, over the whole file."""
READ_TIMEOUT = 10.0
"""Seconds to read the file; a hung file system must not hold a reload for ever."""


def read(path: str | Path) -> PolicyDocument:
    """Read and schema-check a policy file.

    Raises `PolicyError` when there is no document to look at (unreadable, not a regular
    file, too big, not YAML, too deep, empty); otherwise the document carries every
    problem the schema found.
    """
    name = str(path)
    raw = read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError([Problem(name, line, "", "not UTF-8 text")]) from None
    built = _read_plain(name, text)
    data, lines, problems = built if built is not None else _read_composed(name, text)
    document = PolicyDocument(name, data, lines, raw, ())
    # A value the builder refused is None now; the schema would only add "got nothing".
    refused = {p.path for p in problems}
    problems.extend(p for p in _schema_problems(document) if p.path not in refused)
    return PolicyDocument(name, data, lines, raw, tuple(problems))


_Built = tuple[Any, dict[KeyPath, int], list[Problem]]


def _read_composed(name: str, text: str) -> _Built:
    """Anchors, aliases, tags and merge keys: through PyYAML's node graph."""
    node = _compose(name, text)
    if node is None:
        raise _empty(name)
    problems: list[Problem] = []
    lines: dict[KeyPath, int] = {(): node.start_mark.line + 1}
    builder = _Builder(name, lines, problems)
    try:
        data = builder.build(node, ())
    except _TooLargeError as exc:
        raise PolicyError([Problem(name, exc.line, "", str(exc))]) from None
    except RecursionError:
        raise PolicyError([Problem(name, 0, "", "YAML aliases nest too deeply "
                                   "(aliases of aliases, hundreds of levels)")]) from None
    return data, lines, problems


def _empty(name: str) -> PolicyError:
    return PolicyError([Problem(name, 1, "", "the file is empty (expected a policy with "
                                "version, organisation and owned_domains)")])


def read_bytes(path: str | Path, limit: int | None = None, timeout: float = READ_TIMEOUT
               ) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, read within `timeout` seconds.

    A FIFO, a device or a directory is refused without waiting on it (opened
    non-blocking, then checked), so a path swapped for `/dev/zero` or a pipe cannot
    stall or swell the reader. Symbolic links are followed: the target must be regular.
    """
    name = str(path)
    limit = MAX_BYTES if limit is None else limit

    def refuse(message: str) -> PolicyError:
        return PolicyError([Problem(name, 0, "", message)])

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise refuse(f"cannot read the file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refuse(f"not a regular file (it is {_file_kind(info.st_mode)}); "
                         "expected a policy file")
        if info.st_size > limit:
            raise refuse(f"the file is {info.st_size:,} bytes (expected at most {limit:,})")
        deadline = time.monotonic() + timeout
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1024 * 1024):
            size += len(chunk)
            if size > limit:
                raise refuse(f"the file grew past {limit:,} bytes while it was read")
            if time.monotonic() > deadline:
                raise refuse(f"reading the file took longer than {timeout:g} seconds")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise refuse(f"cannot read the file: {exc.strerror}") from None
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket")]
    return next((what for test, what in kinds if test(mode)), "not a regular file")


def _compose(name: str, text: str) -> Node | None:
    """YAML text -> node graph, after a flat pass that bounds what composing may cost.

    libyaml's composer recurses once per nesting level in C: 30,000 nested `[` overflow
    its stack and kill the process. The event stream is flat, so depth is measured there
    first and a deep document is refused before it is composed.
    """
    with _yaml_errors(name, text):
        _check_shape(name, text)
        node: Node | None = yaml.compose(text, Loader=_LOADER)
        return node


@contextlib.contextmanager
def _yaml_errors(name: str, text: str) -> Iterator[None]:
    """libyaml's complaints as a problem with a line."""
    try:
        yield
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        what = "; ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise PolicyError([Problem(name, line, "", f"YAML syntax error: {what}")]) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise PolicyError([Problem(name, line, "", f"character U+{char:04X} is not allowed "
                                   "in YAML (expected printable text)")]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([Problem(name, 0, "", f"YAML error: {exc}")]) from None


def _check_shape(name: str, text: str) -> None:
    depth = 0
    for count, event in enumerate(yaml.parse(text, Loader=_LOADER)):
        if count > MAX_NODES:
            raise _too_many(name, event)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep(name, event)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _too_many(name: str, event: _Event) -> PolicyError:
    line = event.start_mark.line + 1 if event.start_mark else 0
    return PolicyError([Problem(name, line, "", f"the policy has more than {MAX_NODES:,} "
                                "YAML values (a policy for 100,000 domains has about 550,000)")])


def _too_deep(name: str, event: _Event) -> PolicyError:
    line = event.start_mark.line + 1 if event.start_mark else 0
    return PolicyError([Problem(name, line, "", f"the YAML nests deeper than {MAX_DEPTH} "
                                "levels (a policy needs fewer than 10)")])


class _NeedsComposerError(Exception):
    """The document has an anchor, an alias, an explicit tag, a merge key or a second
    document: `_read_composed` reads it."""


_Event = Any
"""A libyaml event (ScalarEvent, MappingStartEvent, ...): its marks are never None."""
_KEY = object()
"""A mapping's state: the next node is a key (else the key whose value comes next)."""
_SKIP = object()
"""A mapping's state: the next node is not built (a duplicate key's value)."""


def _read_plain(name: str, text: str, lines: dict[KeyPath, int] | None = None
                ) -> _Built | None:
    """YAML text -> data in one pass over libyaml's events, with no node graph.

    A policy is plain YAML: mappings, lists and untagged scalars. Building the data
    straight from the event stream, with the size and depth checks in the same pass,
    costs a third of composing nodes first, and keeps no node alive. Lines are recorded
    into `lines` if given; else the document reads the text again when a problem first
    needs one. A document that needs the composer gives None.
    """
    with _yaml_errors(name, text):  # PyYAML's own reader checks the text when made
        loader = _LOADER(text)
    try:
        with _yaml_errors(name, text):
            return _PlainReader(name, loader, lines).run()
    except _NeedsComposerError:
        return None
    except _NeedsLinesError:  # a duplicate key names the line of the first
        return _read_plain(name, text, {})
    finally:
        loader.dispose()


def _lines_again(document: PolicyDocument) -> dict[KeyPath, int]:
    lines: dict[KeyPath, int] = {}
    _read_plain(document.file, document.raw.decode("utf-8"), lines)
    return lines


class _NeedsLinesError(Exception):
    """A problem needs the line of another key: read again, recording lines."""


class _Open:
    """A collection being read: where it stands, and for a mapping, what comes next."""

    __slots__ = ("container", "key", "key_line", "line", "parent", "state")

    def __init__(self, container: Any, parent: _Open | None, key: str | int | None,
                 line: int) -> None:
        self.container = container
        self.parent = parent
        self.key = key
        """Its key or index in `parent`."""
        self.line = line
        """The line `PolicyDocument.line` gives for it (recorded lines only)."""
        self.state: Any = _KEY
        self.key_line = 0

    def path(self, *more: str | int) -> KeyPath:
        parts: list[str | int] = list(reversed(more))
        frame: _Open | None = self
        while frame is not None and frame.key is not None:
            parts.append(frame.key)
            frame = frame.parent
        return tuple(reversed(parts))


class _PlainReader:
    """Builds what `_Builder` builds, from events: the same values, lines and problems.

    A line equal to the one of the key or item it belongs to is not stored:
    `PolicyDocument.line` finds it there (a third of the entries, for flow mappings).
    """

    def __init__(self, name: str, loader: Any, lines: dict[KeyPath, int] | None) -> None:
        self._name = name
        self._loader = loader
        self._lines = lines
        self._constructor: Any = None
        self._keys: dict[str, str] = {}
        self._open: _Open | None = None
        self._documents = 0
        self.data: Any = None
        self.problems: list[Problem] = []
        resolvers: dict[Any, Any] = loader.yaml_implicit_resolvers
        self._resolve = loader.resolve
        self._resolved_first = frozenset(resolvers)
        """First characters that can make a plain scalar anything but text."""
        self._always_resolve = None in resolvers or bool(loader.yaml_path_resolvers)

    def run(self) -> _Built:  # noqa: PLR0912 - one loop: no call for most scalars
        get_event = self._loader.get_event
        limit = MAX_NODES + 1
        count = depth = skip = 0
        keys, first = self._keys, self._resolved_first
        fast = not self._always_resolve and self._lines is None
        while True:
            event = get_event()
            count += 1
            if count > limit:
                raise _too_many(self._name, event)
            kind = type(event)
            if kind is ScalarEvent:
                if event.anchor is not None or event.tag is not None:
                    raise _NeedsComposerError
                frame = self._open
                if skip:
                    continue
                if frame is None or frame.state is _SKIP or type(frame.container) is list:
                    self._scalar(event)
                    continue
                value, state = event.value, frame.state
                if state is not _KEY:  # a mapping's value, the most common event of all
                    frame.state = _KEY
                    if (event.implicit[0] and value[:1] in first) or not fast:
                        value = self._value(event, frame, state)
                    frame.container[state] = value
                elif fast and event.implicit[0] and (key := keys.get(value)) is not None and (
                        key not in frame.container):  # a key seen before, in another mapping
                    frame.state = key  # its line is not recorded: no key_line
                else:
                    self._key(frame, event)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.anchor is not None or event.tag is not None:
                    raise _NeedsComposerError
                depth += 1
                if depth > MAX_DEPTH:
                    raise _too_deep(self._name, event)
                skip = skip + 1 if skip else self._start(event, kind is MappingStartEvent)
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                depth -= 1
                skip = skip - 1 if skip else self._end()
            elif self._ends(kind):
                return self.data, self._lines or {}, self.problems

    def _end(self) -> int:
        assert self._open is not None
        self._open = self._open.parent
        return 0

    def _ends(self, kind: type[Event]) -> bool:
        """Whether the stream ends here; an alias or a second document needs the composer."""
        if kind is AliasEvent:
            raise _NeedsComposerError
        if kind is DocumentStartEvent:
            self._documents += 1
            if self._documents > 1:
                raise _NeedsComposerError  # for its error message
        if kind is StreamEndEvent and not self._documents:
            raise _empty(self._name)
        return kind is StreamEndEvent

    def _scalar(self, event: _Event) -> None:
        """The root, an item, or a value skipped (keys and values: `run`)."""
        frame = self._open
        if frame is None:
            self._root(event)
            self.data = self._value(event, None, None)
        elif type(frame.container) is list:
            if self._lines is not None:
                self._item(frame, event)
            frame.container.append(self._value(event, frame, len(frame.container)))
        else:
            frame.state = _KEY

    def _start(self, event: _Event, mapping: bool) -> int:
        """Open a collection; 1 when it is not built (then skipped to its end)."""
        new: dict[str, Any] | list[Any] = {} if mapping else []
        frame = self._open
        if frame is None:
            self.data = new
            self._open = _Open(new, None, None, self._root(event))
            return 0
        container, state = frame.container, frame.state
        if type(container) is list:
            line = self._item(frame, event) if self._lines is not None else 0
            self._open = _Open(new, frame, len(container), line)
            container.append(new)
        elif state is _KEY:
            self._report(event, frame.path(), "a key must be a plain name")
            frame.state = _SKIP  # and its value
            return 1
        elif state is _SKIP:
            frame.state = _KEY
            return 1
        else:
            frame.state = _KEY
            container[state] = new
            self._open = _Open(new, frame, state, frame.key_line)
        return 0

    def _root(self, event: _Event) -> int:
        line: int = event.start_mark.line + 1
        if self._lines is not None:
            self._lines[()] = line
        return line

    def _item(self, frame: _Open, event: _Event) -> int:
        """Record an item's line; the line its own items fall back to."""
        assert self._lines is not None
        line: int = event.start_mark.line + 1
        if line != frame.line:
            self._lines[frame.path(len(frame.container))] = line
        return line

    def _key(self, frame: _Open, event: _Event) -> None:
        value, implicit = event.value, event.implicit
        key = self._keys.get(value) if implicit[0] else None
        if key is None:  # a plain key seen before is no merge key (`<<`)
            if (((implicit[0] and value[:1] in self._resolved_first) or self._always_resolve)
                    and self._resolve(ScalarNode, value, implicit) == _MERGE):
                raise _NeedsComposerError
            key = self._keys.setdefault(value, value) if implicit[0] else value
        key_line = event.start_mark.line + 1
        if key in frame.container:
            if self._lines is None:
                raise _NeedsLinesError
            first = self._lines.get(frame.path(key), frame.line)
            self._report(event, frame.path(key), f"duplicate key (first at line {first}; "
                         "YAML keeps only one)")
            frame.state = _SKIP
            return
        if self._lines is not None and key_line != frame.line:
            self._lines[frame.path(key)] = key_line
        frame.state = key
        frame.key_line = key_line

    def _value(self, event: _Event, frame: _Open | None, key: str | int | None) -> Any:
        value, implicit = event.value, event.implicit
        if not ((implicit[0] and value[:1] in self._resolved_first) or self._always_resolve):
            return value
        tag = self._resolve(ScalarNode, value, implicit)
        if tag in (_STR, _TIMESTAMP):  # dates stay text: the schema checks them
            return value
        if self._constructor is None:
            self._constructor = yaml.SafeLoader("")
        node = ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
        value, problem = _construct(self._constructor, node)
        if problem is not None:
            path = () if frame is None else frame.path(key) if key is not None else frame.path()
            self._report(event, path, problem)
        return value

    def _report(self, event: _Event, path: KeyPath, message: str) -> None:
        self.problems.append(
            Problem(self._name, event.start_mark.line + 1, format_path(path), message))


def _construct(constructor: Any, node: Node) -> tuple[Any, str | None]:
    """A scalar's value, or None and what is wrong with it."""
    try:
        value = constructor.construct_object(node)
    except (yaml.YAMLError, ValueError) as exc:
        return None, f"cannot read this value: {exc}"
    if isinstance(value, float) and not math.isfinite(value):
        return None, f"{node.value!r} is not a finite number"
    return value, None


class _TooLargeError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


_MERGE = "tag:yaml.org,2002:merge"


class _Builder:
    """Turns YAML nodes into plain data, recording the line of every key and item.

    Aliases and merge keys (`<<: *defaults`) are expanded here, not by PyYAML, so that
    every value they repeat is counted: 800 bytes of nested merges would otherwise grow
    into gigabytes before anything could stop them.
    """

    def __init__(self, file: str, lines: dict[KeyPath, int], problems: list[Problem]) -> None:
        self._file = file
        self._lines = lines
        self._problems = problems
        self._constructor = yaml.SafeLoader("")
        self._count = 0
        self._repeated = 0
        self._seen: set[int] = set()
        self._open: set[int] = set()
        """Collections being built: an alias back to one of them refers to itself."""
        self._repeating = 0

    def build(self, node: Node, path: KeyPath) -> Any:
        line = node.start_mark.line + 1
        self._count += 1
        if self._count > MAX_NODES:
            raise _TooLargeError(line, f"the policy has more than {MAX_NODES:,} values")
        # Only collections can multiply: a repeated scalar is one value, counted above.
        again = False
        if not isinstance(node, ScalarNode):
            again = id(node) in self._seen
            self._seen.add(id(node))
        if again or self._repeating:
            self._repeated += 1
            if self._repeated > MAX_ALIAS_NODES:
                raise _TooLargeError(line, f"YAML aliases and merge keys repeat more than "
                                     f"{MAX_ALIAS_NODES:,} values (an alias bomb?)")
        self._repeating += again
        try:
            return self._value(node, path)
        finally:
            self._repeating -= again

    def _value(self, node: Node, path: KeyPath) -> Any:
        if isinstance(node, MappingNode | SequenceNode):
            if id(node) in self._open:
                raise _TooLargeError(node.start_mark.line + 1, "a YAML alias refers to "
                                     "the collection it stands in (it would never end)")
            self._open.add(id(node))
            try:
                if isinstance(node, MappingNode):
                    return self._mapping(node, path)
                return self._sequence(node, path)
            finally:
                self._open.discard(id(node))
        if node.tag == _TIMESTAMP:
            return node.value  # dates stay text: the schema checks their format
        value, problem = _construct(self._constructor, node)
        if problem is not None:
            self._report(node, path, problem)
        return value

    def _sequence(self, node: SequenceNode, path: KeyPath) -> list[Any]:
        items = []
        for i, item in enumerate(node.value):
            self._lines[(*path, i)] = item.start_mark.line + 1
            items.append(self.build(item, (*path, i)))
        return items

    def _mapping(self, node: MappingNode, path: KeyPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                continue
            sources = (value_node.value if isinstance(value_node, SequenceNode)
                       else [value_node])
            # The first mapping named wins a key, and the mapping's own keys win over all.
            for source in reversed(sources):
                if not isinstance(source, MappingNode):
                    self._report(key_node, path, "a merge key << takes a mapping or a "
                                 "list of mappings")
                    continue
                out.update(self.build(source, path))
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                continue
            if not isinstance(key_node, ScalarNode):
                self._report(key_node, path, "a key must be a plain name")
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                self._report(
                    key_node, (*path, key),
                    f"duplicate key (first at line {first_line[key]}; YAML keeps only one)",
                )
                continue
            first_line[key] = line
            self._lines[(*path, key)] = line
            out[key] = self.build(value_node, (*path, key))
        return out

    def _report(self, node: Node, path: KeyPath, message: str) -> None:
        self._problems.append(
            Problem(self._file, node.start_mark.line + 1, format_path(path), message)
        )


_TYPE_NAMES = {
    "object": "a mapping of keys",
    "array": "a list",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


_PATTERN_NAMES = {
    "^https?://": "a web address (https://HOST/PATH/)",
    "^[^@\\s]+@[^@\\s]+$": "a mail address (NAME@DOMAIN)",
    "^[a-z0-9-]+:\\S+$": "a Postfix next hop (TRANSPORT:DESTINATION, e.g. "
                         "relay:[securemail.example]:587)",
}
"""What each pattern of the schema asks for, in words (a regular expression is no
explanation for a postmaster)."""


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if value is None:
        return "nothing"
    return "text"


def _schema_problems(document: PolicyDocument) -> list[Problem]:
    try:
        _fast_validator()(document.data)
    except fastjsonschema.JsonSchemaException as exc:
        first = str(exc)
    else:
        return []
    validator = jsonschema.Draft7Validator(
        schema(), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    problems = _explain_errors(document, validator)
    return problems or [document.problem((), first)]


def _explain_errors(
    document: PolicyDocument, validator: jsonschema.protocols.Validator
) -> list[Problem]:
    problems: list[Problem] = []
    for error in validator.iter_errors(document.data):
        path: KeyPath = tuple(error.absolute_path)
        instance: Any = error.instance
        expected: Any = error.validator_value
        if error.validator == "additionalProperties":
            where: Any = error.schema
            allowed = sorted(where.get("properties", {}))
            for key in sorted(set(instance) - set(allowed)):
                problems.append(document.problem((*path, key), _unknown_key(str(key), allowed)))
        elif error.validator == "required":
            for key in expected:
                if key not in instance:
                    problems.append(document.problem(path, f"missing required key '{key}'"))
        else:
            problems.append(document.problem(path, _describe(error)))
    return problems


def _unknown_key(key: str, allowed: list[str]) -> str:
    near = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if near:
        return f"unknown key '{key}' (did you mean '{near[0]}'?)"
    return f"unknown key '{key}' (expected one of: {', '.join(allowed)})"


def _describe(error: jsonschema.ValidationError) -> str:
    value = error.instance
    expected: Any = error.validator_value
    match error.validator:
        case "type":
            names = [expected] if isinstance(expected, str) else list(expected)
            wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
            return f"expected {wanted}, got {_type_of(value)}"
        case "enum":
            allowed = ", ".join(json.dumps(v) if isinstance(v, bool) else str(v)
                                for v in expected)
            return f"{value!r} is not allowed (expected one of: {allowed})"
        case "const":
            return f"{value!r} is not supported (expected {expected!r})"
        case "format":
            hint = " (expected YYYY-MM-DD)" if expected == "date" else ""
            return f"{value!r} is not a valid {expected}{hint}"
        case "minItems":
            return f"must list at least {expected} item{'s' if expected != 1 else ''}"
        case "minLength":
            return "must not be empty"
        case "maxLength":
            return f"is longer than {expected} characters"
        case "minimum":
            return f"{value!r} is too small (expected at least {expected})"
        case "maximum":
            return f"{value!r} is too large (expected at most {expected})"
        case "anyOf":
            return (f"expected a domain name, or a mapping with domain, nameservers and mx; "
                    f"got {_type_of(value)}")
        case "uniqueItems":
            return "lists the same item twice (expected each once)"
        case _:
            return _other(error)


def _other(error: jsonschema.ValidationError) -> str:
    pattern = error.validator_value if error.validator == "pattern" else None
    if isinstance(pattern, str) and pattern in _PATTERN_NAMES:
        return f"{error.instance!r} is not {_PATTERN_NAMES[pattern]}"
    return error.message
