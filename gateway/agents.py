"""The agents file: who may speak to the gateway under which name.

```yaml
version: 1
agents:
  - name: analyst
    token_sha256: "<64 hex digits: SHA-256 of the token>"
```

Each agent proves its name with a token; the file keeps only the token's SHA-256.
Missing, malformed or wrong credentials are not an error: the request is from
`anonymous`, which a policy can deny with rules that name `agents:`. An absent or
empty `agents` list means every request is anonymous.

The file belongs to the gateway alone. Whoever can write it can mint identities, so a
file that group or others may write is refused.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError, field_validator

from gateway.audit.keys import _fsync_dir
from gateway.errors import GatewayError, PolicyError
from gateway.policy.load import PolicySource, parse_policy_source, read_policy_text

ANONYMOUS = "anonymous"
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
MAX_HEADER_CHARS = 8192

_NAME = re.compile(NAME_PATTERN)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_EMPTY_TOKEN_SHA256 = hashlib.sha256(b"").hexdigest()
# Unknown names are compared against this, so they cost what known names cost; no token
# hashes to it in practice, and a match still needs the name to exist.
_DUMMY_DIGEST = hashlib.sha256(secrets.token_bytes(32)).digest()


class AgentsFileError(GatewayError):
    """An agents file that cannot be used: names the file and, where known, the line."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        where = "" if file is None else f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(where + message)


def name_problem(name: str) -> str | None:
    """Why `name` cannot be an agent's name, or None when it can."""
    if not _NAME.fullmatch(name):
        return (f"agent name {name!r} is not valid: use 1 to 64 letters, digits, '_', '.' "
                f"or '-', starting with a letter or digit")
    if name.lower() == ANONYMOUS:
        return f"agent name {name!r} is reserved for requests without valid credentials"
    return None


class AgentEntry(BaseModel):
    """One agent: its name and the SHA-256 of its token (hex; stored lowercase)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr
    token_sha256: StrictStr

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        problem = name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("token_sha256")
    @classmethod
    def _valid_hash(cls, value: str) -> str:
        if len(value) != 64:
            raise ValueError(f"must be 64 hex digits (the token's SHA-256), not {len(value)}")
        if not _HEX64.fullmatch(value):
            raise ValueError("must be 64 hex digits (the token's SHA-256): found a non-hex "
                             "character")
        if value.lower() == _EMPTY_TOKEN_SHA256:
            raise ValueError("is the SHA-256 of an empty token")
        return value.lower()


class AgentsModel(BaseModel):
    """The whole file. `version: 1` is required; `agents` absent, null or empty: no agents."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    agents: tuple[AgentEntry, ...] | None = None


@dataclass(frozen=True)
class AgentDirectory:
    """Known agents and their token hashes; immutable. The repr shows names only."""

    _digests: Mapping[str, bytes] = field(default_factory=dict, repr=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_digests", MappingProxyType(dict(self._digests)))

    @classmethod
    def empty(cls) -> AgentDirectory:
        """No agents: every request is anonymous."""
        return cls({})

    @classmethod
    def from_entries(cls, entries: tuple[AgentEntry, ...]) -> AgentDirectory:
        """The directory of checked entries (names already unique)."""
        return cls({e.name: bytes.fromhex(e.token_sha256) for e in entries})

    @property
    def names(self) -> tuple[str, ...]:
        """Agent names in file order."""
        return tuple(self._digests)

    def __repr__(self) -> str:
        return f"AgentDirectory(names={list(self._digests)!r})"

    def authenticate(self, name: str | None, token: str | None) -> str:
        """`name` when it is a known agent and `token` is its token, else ANONYMOUS.

        An unknown name costs the same hash and comparison as a known one.
        """
        if name is None or token is None:
            return ANONYMOUS
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        expected = self._digests.get(name)
        matches = hmac.compare_digest(digest, _DUMMY_DIGEST if expected is None else expected)
        return name if matches and expected is not None else ANONYMOUS

    def from_credentials(self, text: str | None) -> str:
        """The agent named by `name:token` (as a client keeps it in an environment
        variable), or ANONYMOUS when the text is missing, has no colon or does not match."""
        if text is None:
            return ANONYMOUS
        name, colon, token = text.partition(":")
        return self.authenticate(name, token) if colon else ANONYMOUS

    def from_proxy_authorization(self, header_value: str | None) -> str:
        """The agent named by a `Proxy-Authorization: Basic base64(name:token)` value.

        The scheme is case-insensitive and surrounding whitespace is ignored. Anything
        else (another scheme, bad base64, bytes that are not UTF-8, no colon, no header)
        is ANONYMOUS; this never raises.
        """
        if header_value is None or len(header_value) > MAX_HEADER_CHARS:
            return ANONYMOUS
        parts = header_value.split(None, 1)
        if len(parts) != 2 or parts[0].lower() != "basic":
            return ANONYMOUS
        try:
            decoded = base64.b64decode(parts[1].strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError and non-ASCII input
            return ANONYMOUS
        return self.from_credentials(decoded)


def new_token() -> str:
    """A fresh token: 32 random bytes, URL-safe base64 (safe inside a proxy URL)."""
    return secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    """What the agents file stores for `token`."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def load_agents(path: str | os.PathLike[str]) -> AgentDirectory:
    """Read and check an agents file; refuses one that group or others may write."""
    model = _read(os.fspath(path))[2]
    return AgentDirectory.from_entries(model.agents or ())


def add_agent(path: str | os.PathLike[str], name: str) -> str:
    """Add agent `name` with a fresh token to the file and return the token.

    A missing file is created with `version: 1`. An existing file is checked first and
    an existing name refused; the new entry is appended to its text, keeping comments
    (or, where appending would not load as intended, the file is rewritten). The file
    is replaced atomically with mode 0600: on any error it is left as it was.
    """
    problem = name_problem(name)
    if problem:
        raise AgentsFileError(problem)
    file = os.fspath(path)
    token = new_token()
    entry = AgentEntry(name=name, token_sha256=token_sha256(token))
    if os.path.lexists(file):
        text, source, model = _read(file)
        entries = model.agents or ()
        for i, existing in enumerate(entries):
            if existing.name == name:
                raise AgentsFileError(f"agent {name!r} already exists", file=file,
                                      line=source.line_of(("agents", i, "name")))
        new_text = _appended(text, source, entries, entry, file)
    else:
        new_text = "version: 1\nagents:\n" + _entry_text("  ", entry)
    _write_atomically(os.path.realpath(file), new_text)
    return token


def _read(file: str) -> tuple[str, PolicySource, AgentsModel]:
    _check_permissions(file)
    try:
        text = read_policy_text(file)
    except PolicyError as e:
        raise _from_policy_error(e, file) from None
    source, model = _parse(text, file)
    return text, source, model


def _parse(text: str, file: str) -> tuple[PolicySource, AgentsModel]:
    try:
        source = parse_policy_source(text, file)
    except PolicyError as e:
        raise _from_policy_error(e, file) from None
    try:
        model = AgentsModel.model_validate(source.data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        raise AgentsFileError(_describe(err, loc), file=file, line=source.line_of(loc)) from None
    seen: dict[str, int] = {}
    for i, entry in enumerate(model.agents or ()):
        if entry.name in seen:
            raise AgentsFileError(f"duplicate agent name {entry.name!r} (first at agents."
                                  f"{seen[entry.name]})", file=file,
                                  line=source.line_of(("agents", i, "name")))
        seen[entry.name] = i
    return source, model


def _check_permissions(file: str) -> None:
    try:
        info = os.stat(file)
    except OSError as e:
        raise AgentsFileError(f"cannot read the agents file: {e.strerror or e}",
                              file=file) from None
    if not stat.S_ISREG(info.st_mode):
        raise AgentsFileError("the agents file is not a regular file", file=file)
    if info.st_mode & 0o022:
        raise AgentsFileError(f"the agents file is writable by group or others (mode "
                              f"{stat.S_IMODE(info.st_mode):04o}), who could add agents; "
                              f"chmod 600 it", file=file)


def _from_policy_error(e: PolicyError, file: str) -> AgentsFileError:
    """The shared YAML reader speaks of 'policy'; say 'agents file' instead."""
    message = e.message
    for old, new in _POLICY_WORDS:
        message = message.replace(old, new)
    return AgentsFileError(message, file=file, line=e.line)


_POLICY_WORDS = (
    ("policy must be a mapping with 'version', 'default' and 'rules'",
     "the agents file must be a mapping with 'version' and 'agents'"),
    ("policy file", "the agents file"),
    ("read policy", "read the agents file"),
    ("policy is empty", "the agents file is empty"),
    ("policy contains", "the agents file contains"),
    ("in a policy", "in an agents file"),
)


def _describe(err: Any, loc: tuple[str | int, ...]) -> str:
    where = ".".join(str(p) for p in loc)
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        parent = ".".join(map(str, loc[:-1]))
        return f"unknown key '{loc[-1]}'" + (f" in {parent}" if parent else "")
    if err["type"] == "missing":
        return f"missing key '{where}'"
    if loc == ("version",):
        return "unsupported agents file version (this gateway reads version: 1)"
    if err["type"] == "string_type":
        return f"{where}: must be a string (put it in quotes)"
    if err["type"] in ("tuple_type", "model_type"):
        kind = "a list" if err["type"] == "tuple_type" else "a mapping"
        return f"{where}: must be {kind}"
    return f"{where}: {msg}"


def _entry_text(indent: str, entry: AgentEntry) -> str:
    # Names and hashes hold no character that needs escaping inside double quotes.
    return (f'{indent}- name: "{entry.name}"\n'
            f'{indent}  token_sha256: "{entry.token_sha256}"\n')


def _appended(text: str, source: PolicySource, entries: tuple[AgentEntry, ...],
              entry: AgentEntry, file: str) -> str:
    """`text` with `entry` appended, checked to load as the old agents plus `entry`;
    else the file written afresh."""
    wanted = (*entries, entry)
    base = text if text.endswith("\n") or not text else text + "\n"
    candidate: str | None = None
    if entries:
        line = source.line_of(("agents", len(entries) - 1)) or 0
        last = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
        if last.lstrip().startswith("-"):
            candidate = base + _entry_text(last[: len(last) - len(last.lstrip())], entry)
    elif "agents" not in source.data:
        candidate = base + "agents:\n" + _entry_text("  ", entry)
    elif source.data["agents"] is None:
        candidate = base + _entry_text("  ", entry)
    if candidate is not None:
        with contextlib.suppress(AgentsFileError):
            if _parse(candidate, file)[1].agents == wanted:
                return candidate
    return "version: 1\nagents:\n" + "".join(_entry_text("  ", e) for e in wanted)


def _write_atomically(file: str, text: str) -> None:
    """Replace `file` with `text` so that no reader sees a partial file: a private
    temporary file in the same directory, fsynced, renamed into place, directory fsynced."""
    directory = os.path.dirname(file) or "."
    tmp = os.path.join(directory, f".{os.path.basename(file)}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise AgentsFileError(f"cannot write the agents file: {e.strerror or e}",
                              file=file) from None
    try:
        try:
            os.fchmod(fd, 0o600)
            data = text.encode("utf-8")
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, file)
        _fsync_dir(Path(directory))
    except OSError as e:
        raise AgentsFileError(f"cannot write the agents file: {e.strerror or e}",
                              file=file) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
