"""Reading a policy file: YAML with line numbers, checked against the JSON Schema.

Every problem names the file, the line, the key path and what was expected, so a
postmaster can fix a policy without reading code. All problems are collected, not just
the first.
"""

from __future__ import annotations

import copy
import difflib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

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
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


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


def read(path: str | Path) -> PolicyDocument:
    """Read and schema-check a policy file.

    Raises `PolicyError` when there is no document to look at (unreadable, not YAML,
    empty); otherwise the document carries every problem the schema found.
    """
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError([Problem(name, 0, "", f"cannot read the file: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError([Problem(name, line, "", "not UTF-8 text")]) from None
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        what = "; ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise PolicyError([Problem(name, line, "", f"YAML syntax error: {what}")]) from None
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
    except (RecursionError, _TooLargeError) as exc:
        what = ("YAML aliases refer to themselves" if isinstance(exc, RecursionError)
                else f"the policy expands to more than {MAX_NODES} values (YAML aliases?)")
        raise PolicyError([Problem(name, 1, "", what)]) from None
    document = PolicyDocument(name, data, lines, raw, ())
    problems.extend(_schema_problems(document))
    return PolicyDocument(name, data, lines, raw, tuple(problems))


MAX_NODES = 2_000_000
"""Far above a 100,000-domain policy; stops alias bombs that expand exponentially."""


class _TooLargeError(Exception):
    pass


class _Builder:
    """Turns YAML nodes into plain data, recording the line of every key and item."""

    def __init__(self, file: str, lines: dict[KeyPath, int], problems: list[Problem]) -> None:
        self._file = file
        self._lines = lines
        self._problems = problems
        self._constructor = yaml.SafeLoader("")
        self._count = 0

    def build(self, node: Node, path: KeyPath) -> Any:
        self._count += 1
        if self._count > MAX_NODES:
            raise _TooLargeError
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self._lines[(*path, i)] = item.start_mark.line + 1
                items.append(self.build(item, (*path, i)))
            return items
        if node.tag == _TIMESTAMP:
            return node.value  # dates stay text: the schema checks their format
        try:
            return self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError) as exc:
            self._report(node, path, f"cannot read this value: {exc}")
            return None

    def _mapping(self, node: MappingNode, path: KeyPath) -> dict[str, Any]:
        try:
            self._constructor.flatten_mapping(node)
        except yaml.YAMLError as exc:
            self._report(node, path, f"cannot merge this mapping: {exc}")
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self._report(key_node, path, "a key must be a plain name")
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in out:
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
            return f"{value!r} is not allowed (expected one of: {', '.join(map(str, expected))})"
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
            return error.message
