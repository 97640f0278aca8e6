"""The only reader of policy files: bytes -> YAML nodes -> plain data -> model.

PyYAML's loaders accept duplicate keys silently, build arbitrary objects from tags
and expand alias bombs; this reader composes the node graph itself and converts
it with those holes closed, keeping every value's line for error messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.errors import PolicyError
from gateway.policy.model import PolicyModel

MAX_POLICY_BYTES = 1 << 20
MAX_NODES = 200_000

_PLAIN_TAGS = {
    "tag:yaml.org,2002:str": str,
    "tag:yaml.org,2002:int": int,
    "tag:yaml.org,2002:bool": bool,
    "tag:yaml.org,2002:null": type(None),
    "tag:yaml.org,2002:float": float,
    "tag:yaml.org,2002:timestamp": str,  # kept as written: no rule field is a date
}
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class PolicySource:
    """A policy document as data, with the line of every value."""

    data: Any
    lines: dict[Location, int]
    file: str

    def line_of(self, loc: Location) -> int | None:
        """The line of the deepest known node on `loc`'s path."""
        for depth in range(len(loc), -1, -1):
            line = self.lines.get(loc[:depth])
            if line is not None:
                return line
        return None


def read_policy_text(path: str | os.PathLike[str]) -> str:
    """Read a policy file: at most 1 MiB, strict UTF-8, no NUL bytes."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read(MAX_POLICY_BYTES + 1)
    except OSError as e:
        raise PolicyError(f"cannot read policy: {e.strerror or e}", file=name) from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy file is larger than {MAX_POLICY_BYTES} bytes", file=name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise PolicyError(f"not UTF-8: byte 0x{raw[e.start]:02x} cannot be decoded", file=name,
                          line=line) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        raise PolicyError("policy contains a NUL byte", file=name,
                          line=text[: text.index("\x00")].count("\n") + 1)
    return text


def parse_policy_source(text: str, file: str = "<policy>") -> PolicySource:
    """Parse YAML text into plain data, refusing tags, duplicate keys and alias bombs."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        raise PolicyError(f"invalid YAML: {problem}", file=file,
                          line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise PolicyError(f"invalid YAML: {e}", file=file) from None
    if node is None:
        raise PolicyError("policy is empty", file=file)
    converter = _Converter(file)
    data = converter.convert(node, ())
    if not isinstance(data, dict):
        raise PolicyError("policy must be a mapping with 'version', 'default' and 'rules'",
                          file=file, line=node.start_mark.line + 1)
    return PolicySource(data, converter.lines, file)


def validate_policy(source: PolicySource) -> PolicyModel:
    """Check the data against the schema; the first error names its line and key."""
    try:
        return PolicyModel.model_validate(source.data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        raise PolicyError(_describe(err, loc), file=source.file, line=source.line_of(loc)) from None


def load_policy_file(path: str | os.PathLike[str]) -> tuple[PolicyModel, PolicySource]:
    name = os.fspath(path)
    source = parse_policy_source(read_policy_text(name), name)
    return validate_policy(source), source


def _describe(err: Any, loc: Location) -> str:
    where = ".".join(str(p) for p in loc if not str(p).startswith(("function-", "constrained-")))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        parent = ".".join(map(str, loc[:-1]))
        return f"unknown key '{loc[-1]}'" + (f" in {parent}" if parent else "")
    if err["type"] == "missing":
        return f"missing key '{where}'"
    if err["type"] == "literal_error" and loc == ("version",):
        return "unsupported policy version (this gateway reads version: 1)"
    return f"{where}: {msg}" if where else msg


class _Converter:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Location, int] = {}
        self.nodes = 0

    def fail(self, node: yaml.Node, message: str) -> PolicyError:
        return PolicyError(message, file=self.file, line=node.start_mark.line + 1)

    def convert(self, node: yaml.Node, loc: Location) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(node, f"document expands to more than {MAX_NODES} nodes (alias bomb?)")
        if len(loc) > 20:
            raise self.fail(node, "document is nested too deeply")
        self.lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            return [self.convert(child, (*loc, i)) for i, child in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            return self.mapping(node, loc)
        raise self.fail(node, f"YAML tag '{node.tag}' is not allowed in a policy")

    def scalar(self, node: yaml.ScalarNode) -> Any:
        kind = _PLAIN_TAGS.get(node.tag)
        if kind is None:
            raise self.fail(node, f"YAML tag '{node.tag}' is not allowed in a policy")
        if kind is str:
            return node.value
        return yaml.SafeLoader(node.value).construct_object(node)  # type: ignore[no-untyped-call]

    def mapping(self, node: yaml.MappingNode, loc: Location) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise self.fail(key_node, "YAML merge keys ('<<') are not allowed in a policy")
            key = self.scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise self.fail(key_node, "mapping keys must be plain strings")
            if key in out:
                raise self.fail(key_node, f"duplicate key '{key}'")
            out[key] = self.convert(value_node, (*loc, key))
            self.lines[(*loc, key)] = key_node.start_mark.line + 1
        return out
