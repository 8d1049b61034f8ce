"""Reading a policy file: YAML with line numbers, checked against the JSON Schema.

Every problem names the file, the line, the key path and what was expected, so a
postmaster can fix a policy without reading code. All problems are collected, not just
the first.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import stat
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from postwacht.core.text import printable

KeyPath = tuple[str | int, ...]
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
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
    return fastjsonschema.compile(copy.deepcopy(schema()))  # it writes into the schema


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
    node = _compose(name, text)
    if node is None:
        raise PolicyError(
            [Problem(name, 1, "", "the file is empty (expected a policy with version, "
                     "organisation and owned_domains)")]
        )
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
    document = PolicyDocument(name, data, lines, raw, ())
    # A value the builder refused is None now; the schema would only add "got nothing".
    refused = {p.path for p in problems}
    problems.extend(p for p in _schema_problems(document) if p.path not in refused)
    return PolicyDocument(name, data, lines, raw, tuple(problems))


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
    try:
        _check_shape(name, text)
        return yaml.compose(text, Loader=_LOADER)
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
            line = event.start_mark.line + 1 if event.start_mark else 0
            raise PolicyError([Problem(
                name, line, "", f"the policy has more than {MAX_NODES:,} YAML values "
                "(a policy for 100,000 domains has about 550,000)")])
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise PolicyError([Problem(
                    name, line, "", f"the YAML nests deeper than {MAX_DEPTH} levels "
                    "(a policy needs fewer than 10)")])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


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
        try:
            value = self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError) as exc:
            self._report(node, path, f"cannot read this value: {exc}")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self._report(node, path, f"{node.value!r} is not a finite number")
            return None
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
