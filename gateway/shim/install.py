"""Build the command shim (`shim.c`) and install it into a directory.

An installed directory holds `gateway-shim` (the compiled shim), `gateway-shim.conf`
(its configuration, the only place it reads settings from) and one symlink per
shimmed name pointing to `gateway-shim`. Each name's real program is recorded by
absolute path at install time, so the shim never looks anything up on PATH.

Put the directory first on an agent's PATH, or, in a container, mount the shim over
`/bin/sh` and `/bin/bash` with the real programs copied elsewhere (`real_dir`). Mount
it read-only: an agent that can write the directory can replace the shim.
"""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import os
import secrets
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.policy.compiled import CompiledPolicy

SOURCE = Path(__file__).with_name("shim.c")
SHIM_NAME = "gateway-shim"
CONFIG_NAME = "gateway-shim.conf"
SYSTEM_CONFIG = "/etc/gateway/shim.conf"
SHELLS = ("sh", "bash", "dash")
"""Shimmed whenever they are found on PATH."""
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")
DEFAULT_TIMEOUT_MS = 2000
MAX_TIMEOUT_MS = 600_000
_UNIX_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_GLOB_CHARS = frozenset("*?[")
_COMPILE_TIMEOUT_S = 300
_QUOTED_LINES = 40


class ShimBuildError(GatewayError):
    """The shim could not be compiled: no compiler, or the compiler failed."""


class ShimInstallError(GatewayError):
    """The shim could not be installed as asked; nothing in the directory was replaced."""


class ShimConfigError(GatewayError):
    """A shim configuration that the shim would refuse; names the file and line."""


# --- building ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShimBuild:
    path: Path
    compiler: str
    static: bool


def find_compiler(cc: str | None = None) -> list[str]:
    """The compiler command: the first found of $CC, the `cc` argument and `gcc`, its
    program made an absolute path (a $CC such as `ccache gcc` keeps its further words)."""
    tried = []
    for candidate in (os.environ.get("CC"), cc, "gcc"):
        if not candidate:
            continue
        try:
            words = shlex.split(candidate)
        except ValueError:
            words = []
        if not words:
            continue
        tried.append(words[0])
        found = shutil.which(words[0])
        if found:
            return [os.path.abspath(found), *words[1:]]
    raise ShimBuildError(f"no C compiler found (tried {', '.join(tried)}); install gcc, or "
                         "name one with $CC")


def build_shim(out_path: str | os.PathLike[str], cc: str | None = None,
               config: str | os.PathLike[str] | None = None) -> ShimBuild:
    """Compile `shim.c` into `out_path` (mode 0755, replaced atomically): statically
    linked where the C library allows it, else dynamically. `config`, an absolute
    path, is baked in as the shim's configuration, so that it is found wherever the
    shim runs from (mounted over /bin/sh, say)."""
    out = Path(out_path).absolute()
    compiler = find_compiler(cc)
    defines = []
    if config is not None:
        baked = os.fspath(config)
        if not os.path.isabs(baked) or any(c in baked for c in '"\\\n'):
            raise ShimBuildError(f"cannot bake {baked!r} into the shim: an absolute path "
                                 "without quotes, backslashes or newlines is needed")
        defines.append(f'-DGATEWAY_SHIM_CONFIG="{baked}"')
    tmp = out.with_name(f".{out.name}.build-{secrets.token_hex(4)}")
    failure = ""
    try:
        for static in (True, False):
            cmd = [*compiler, *CFLAGS, *defines, *(["-static"] if static else []), "-o",
                   str(tmp), str(SOURCE)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                                      timeout=_COMPILE_TIMEOUT_S, check=False)
            except OSError as e:
                raise ShimBuildError(f"cannot run {compiler[0]}: {e.strerror or e}") from None
            except subprocess.TimeoutExpired:
                raise ShimBuildError(f"{compiler[0]} did not finish compiling {SOURCE} "
                                     f"within {_COMPILE_TIMEOUT_S} s") from None
            if proc.returncode == 0:
                os.chmod(tmp, 0o755)
                os.replace(tmp, out)
                return ShimBuild(out, compiler[0], static)
            failure = _quote(proc.stderr or proc.stdout) or f"exit status {proc.returncode}"
    except OSError as e:
        raise ShimBuildError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    raise ShimBuildError(f"{compiler[0]} cannot compile {SOURCE}:\n{failure}")


def _quote(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) > _QUOTED_LINES:
        lines = [*lines[:_QUOTED_LINES], f"... ({len(lines) - _QUOTED_LINES} more lines)"]
    return "\n".join(f"  {line}" for line in lines)


# --- the configuration ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShimConfig:
    """What `gateway-shim.conf` says. `real` maps each shimmed name to its real program;
    a name without an entry is always denied."""

    api: str
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    fail_open: bool = False
    spool: str | None = None
    real: Mapping[str, str] = field(default_factory=dict)

    def render(self) -> str:
        lines = [
            "# gateway-shim configuration, written by `gateway shim install`.",
            "# The shim reads this file (or /etc/gateway/shim.conf), never its environment.",
            f"api {self.api}",
            f"timeout_ms {self.timeout_ms}",
            f"fail_open {int(self.fail_open)}",
        ]
        if self.spool is not None:
            lines.append(f"spool {self.spool}")
        lines += [f"real {name} {path}" for name, path in sorted(self.real.items())]
        return "\n".join(lines) + "\n"


def parse_config(text: str, file: str = CONFIG_NAME) -> ShimConfig:
    """Parse a configuration as the shim does; ShimConfigError at the first problem.
    Stricter than the shim in one way: a name given two `real` entries is an error."""
    api: str | None = None
    settings: dict[str, object] = {}
    real: dict[str, str] = {}
    if "\0" in text:
        raise ShimConfigError(f"{file}: contains a NUL byte")
    for number, raw in enumerate(text.split("\n"), 1):
        def fail(message: str, number: int = number) -> ShimConfigError:
            return ShimConfigError(f"{file}:{number}: {message}")

        line = _strip_comment(raw).strip(" \t\r")
        if not line:
            continue
        key, _, value = line.replace("\t", " ").partition(" ")
        value = value.strip(" \t\r")
        if not value:
            raise fail(f"'{key}' needs a value")
        if key == "api":
            if not value.startswith(("tcp:", "/", "unix:/")):
                raise fail("a Unix socket api needs an absolute path")
            try:
                api = normalize_api(value)
            except ShimInstallError as e:
                raise fail(str(e)) from None
        elif key in ("timeout_ms", "fail_open"):
            high = MAX_TIMEOUT_MS if key == "timeout_ms" else 1
            low = 1 if key == "timeout_ms" else 0
            if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
                raise fail(f"bad {key} '{value}' ({low} to {high})")
            settings[key] = int(value) if key == "timeout_ms" else bool(int(value))
        elif key == "spool":
            if not value.startswith("/"):
                raise fail("spool must be an absolute path")
            settings["spool"] = value
        elif key == "real":
            name, _, path = value.partition(" ")
            path = path.strip(" \t\r")
            if not path.startswith("/"):
                raise fail(f"'real {name}' needs an absolute path")
            if name in real:
                raise fail(f"a second 'real' entry for '{name}' (the shim uses the first)")
            real[name] = path
        else:
            raise fail(f"unknown setting '{key}' (api, timeout_ms, fail_open, spool, real)")
    if api is None:
        raise ShimConfigError(f"{file}: no 'api' line")
    timeout = settings.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    spool = settings.get("spool")
    assert isinstance(timeout, int)
    assert spool is None or isinstance(spool, str)
    return ShimConfig(api, timeout, bool(settings.get("fail_open", False)), spool,
                      MappingProxyType(real))


def read_config(path: str | os.PathLike[str]) -> ShimConfig:
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="surrogateescape")
    except OSError as e:
        raise ShimConfigError(f"cannot read {os.fspath(path)}: {e.strerror or e}") from None
    return parse_config(text, os.fspath(path))


def _strip_comment(line: str) -> str:
    """A comment starts at '#' at the start of a line or after white space."""
    for i, char in enumerate(line):
        if char == "#" and (i == 0 or line[i - 1] in " \t\r"):
            return line[:i]
    return line


def normalize_api(address: str) -> str:
    """The decision API's address as the shim takes it: `unix:/ABS/PATH` (from a path or
    `unix:PATH`) or `tcp:IPV4:PORT` / `tcp:[IPV6]:PORT`. The shim resolves no names."""
    if address.startswith("tcp:"):
        host, colon, port = address[4:].rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        literal = host[1:-1] if bracketed else host
        try:
            ip = ipaddress.ip_address(literal)
        except ValueError:
            ip = None
        if colon and ip is not None and (ip.version == 4) != bracketed and port.isascii() \
                and port.isdigit() and 0 < int(port) < 65536:
            return f"tcp:{host}:{int(port)}"
        raise ShimInstallError(f"bad api address {address!r}: use tcp:IPV4:PORT or "
                               "tcp:[IPV6]:PORT (an address, not a name: the shim resolves "
                               "no names), or a Unix socket path")
    path = address.removeprefix("unix:")
    if not path:
        raise ShimInstallError("the api address is empty")
    path = os.path.abspath(path)
    _config_text(path, "the api socket path")
    if len(path.encode("utf-8", "surrogateescape")) > _UNIX_PATH_MAX:
        raise ShimInstallError(f"the api socket path {path} is longer than {_UNIX_PATH_MAX} "
                               "bytes, too long for a Unix socket")
    return f"unix:{path}"


def _config_text(value: str, what: str) -> str:
    """`value` as one configuration value: no control characters, no surrounding white
    space, nothing a comment would cut."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) or value != value.strip() \
            or _strip_comment(value) != value:
        raise ShimInstallError(f"{what} {value!r} cannot be written to the shim's "
                               "configuration (control characters, surrounding white space "
                               "or ' #')")
    return value


# --- installing ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstallResult:
    """What `install_shims` did. `installed` maps each shimmed name to the real program
    recorded for it; `missing` are names asked for whose program is not on PATH (they
    got no shim); `unmatched` are globs from the policy or `names` that matched no
    program on PATH."""

    directory: Path
    shim: Path
    config: Path
    installed: Mapping[str, str]
    missing: tuple[str, ...]
    unmatched: tuple[str, ...]
    api: str
    timeout_ms: int
    fail_open: bool
    spool: str | None
    real_dir: Path | None
    static: bool
    compiler: str


def install_shims(directory: str | os.PathLike[str], *, api: str, names: Iterable[str] = (),
                  policy: CompiledPolicy | None = None, fail_open: bool = False,
                  timeout_ms: int = DEFAULT_TIMEOUT_MS,
                  spool: str | os.PathLike[str] | None = None,
                  real_dir: str | os.PathLike[str] | None = None,
                  path: str | None = None, cc: str | None = None) -> InstallResult:
    """Build the shim into `directory`, write its configuration and link each name to it.

    The names are sh, bash and dash where found, `names`, and the program word of every
    shell_exec rule of `policy`. A name with `*`, `?` or `[` is a glob over the programs
    on PATH; one with no literal character (`*`) is skipped. Real programs are looked up
    on `path` (default $PATH) without `directory` itself; one found inside `directory`
    (a subdirectory, a link into it) or that is a shim is refused. With `real_dir` each
    is copied there and the copy is recorded. Everything is checked before anything is
    written, and a file in `directory` that is not a link to the shim is never replaced.
    """
    where = Path(directory).absolute()
    api = normalize_api(api)
    if not 1 <= timeout_ms <= MAX_TIMEOUT_MS:
        raise ShimInstallError(f"timeout_ms must be 1 to {MAX_TIMEOUT_MS}, not {timeout_ms}")
    spool_path = _config_text(os.path.abspath(spool), "the spool path") \
        if spool is not None else None
    if where.exists() and not where.is_dir():
        raise ShimInstallError(f"{where} is not a directory")
    where_real = os.path.realpath(where)
    copies = Path(real_dir).absolute() if real_dir is not None else None
    if copies is not None and _inside(os.path.realpath(copies), where_real):
        raise ShimInstallError(f"--real-dir {copies} is inside {where}: the shim would run "
                               "programs from its own directory")

    wanted = list(SHELLS)
    required = [_check_name(n) for n in names]
    if policy is not None:
        required += policy_programs(policy)
    wanted += [n for n in required if n not in wanted]
    dirs = _path_dirs(path, where_real)
    found: dict[str, str] = {}
    missing: list[str] = []
    unmatched: list[str] = []
    for name in wanted:
        if _GLOB_CHARS & set(name):
            matches = _glob_programs(name, dirs)
            if not matches:
                unmatched.append(name)
            for match in matches:
                found.setdefault(match, matches[match])
            continue
        real = _find_program(name, dirs)
        if real is not None:
            found.setdefault(name, real)
        elif name in required:
            missing.append(name)
    for name, real in found.items():
        _check_real(name, real, where, where_real)
        _config_text(real, f"the real program for {name},")
        _check_not_replacing(where / name)

    where.mkdir(parents=True, exist_ok=True)
    build = build_shim(where / SHIM_NAME, cc, config=where / CONFIG_NAME)
    recorded = dict(found)
    if copies is not None:
        copies.mkdir(parents=True, exist_ok=True)
        for name, real in found.items():
            recorded[name] = _copy_program(real, copies / name)
    config = ShimConfig(api, timeout_ms, fail_open, spool_path, MappingProxyType(recorded))
    _write_atomic(where / CONFIG_NAME, config.render(), 0o644)
    for name in recorded:
        _link(where / name)
    _remove_stale_links(where, set(recorded))
    return InstallResult(
        directory=where, shim=build.path, config=where / CONFIG_NAME,
        installed=MappingProxyType(dict(sorted(recorded.items()))), missing=tuple(missing),
        unmatched=tuple(unmatched), api=api, timeout_ms=timeout_ms, fail_open=fail_open,
        spool=spool_path, real_dir=copies, static=build.static, compiler=build.compiler)


def policy_programs(policy: CompiledPolicy) -> list[str]:
    """The program word of each shell_exec rule's command patterns, in rule order: a
    literal name or a glob. Patterns whose program word has no literal character (`*`)
    are skipped: they would shim every program on PATH."""
    out: list[str] = []
    for rule in policy.rules:
        if rule.action.value != "shell_exec":
            continue
        for selector in rule.selectors:
            try:
                words = shlex.split(selector)
            except ValueError:
                words = selector.split()
            if not words:
                continue
            word = words[0].rsplit("/", 1)[-1]
            if not word.strip("*?") or not _valid_name(word) or word in out:
                continue
            out.append(word)
    return out


def _valid_name(name: str) -> bool:
    return bool(name) and name not in (".", "..", SHIM_NAME, CONFIG_NAME) \
        and not name.startswith(("-", ".")) \
        and not any(c in "/#=$`\\" or c.isspace() or not c.isprintable() for c in name)


def _check_name(name: str) -> str:
    if not _valid_name(name):
        raise ShimInstallError(f"cannot shim {name!r}: a program name is a file name without "
                               "'/', white space or '#', not starting with '-' or '.', and "
                               f"not {SHIM_NAME}")
    return name


def _path_dirs(path: str | None, exclude_real: str) -> list[str]:
    """PATH's absolute directories, in order, without `exclude_real` (relative entries
    depend on the caller's working directory and are skipped)."""
    value = os.environ.get("PATH", os.defpath) if path is None else path
    dirs: list[str] = []
    for entry in value.split(os.pathsep):
        if not entry or not os.path.isabs(entry):
            continue
        entry = os.path.normpath(entry)
        if entry not in dirs and os.path.realpath(entry) != exclude_real:
            dirs.append(entry)
    return dirs


def _is_program(candidate: str) -> bool:
    return os.path.isfile(candidate) and os.access(candidate, os.X_OK)


def _find_program(name: str, dirs: Sequence[str]) -> str | None:
    for d in dirs:
        candidate = os.path.join(d, name)
        if _is_program(candidate):
            return candidate
    return None


def _glob_programs(pattern: str, dirs: Sequence[str]) -> dict[str, str]:
    """Each program name on PATH matching `pattern`, with the first of it on PATH."""
    out: dict[str, str] = {}
    for d in dirs:
        try:
            entries = sorted(os.listdir(d))
        except OSError:
            continue
        for entry in entries:
            if entry not in out and fnmatch.fnmatchcase(entry, pattern) \
                    and _valid_name(entry) and _is_program(os.path.join(d, entry)):
                out[entry] = os.path.join(d, entry)
    return dict(sorted(out.items()))


def _check_real(name: str, real: str, where: Path, where_real: str) -> None:
    """Refuse a real program inside the shim's directory, or one that is a shim: the
    shim would run itself."""
    resolved = os.path.realpath(real)
    if _inside(resolved, where_real):
        raise ShimInstallError(f"refusing to install into {where}: the real {name}, {real}, "
                               "is inside it, so the shim would run itself")
    if os.path.basename(resolved) == SHIM_NAME:
        raise ShimInstallError(f"the real {name} found on PATH, {real}, is a gateway shim "
                               f"({resolved}); take its directory off the PATH used to "
                               "install")


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _is_shim_link(path: Path) -> bool:
    return path.is_symlink() and os.readlink(path) in (SHIM_NAME, str(path.parent / SHIM_NAME))


def _check_not_replacing(path: Path) -> None:
    if os.path.lexists(path) and not _is_shim_link(path):
        raise ShimInstallError(f"{path} exists and is not a link to {SHIM_NAME}; refusing to "
                               "replace it (install into a directory of its own)")


def _link(path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    os.symlink(SHIM_NAME, tmp)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink()
        raise


def _remove_stale_links(directory: Path, keep: set[str]) -> None:
    for entry in os.listdir(directory):
        if entry not in keep and _is_shim_link(directory / entry):
            (directory / entry).unlink()


def _copy_program(source: str, target: Path) -> str:
    """Copy `source` (following links) to `target`, replaced atomically, mode kept."""
    if target.exists() and os.path.samefile(source, target):
        return str(target)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, target)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ShimInstallError(f"cannot copy {source} to {target}: {e.strerror or e}") from None
    return str(target)


def _write_atomic(path: Path, text: str, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- checking ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckReport:
    """`problems` is empty when the shim in `directory` would work as configured."""

    directory: Path
    config: ShimConfig | None
    links: tuple[str, ...]
    problems: tuple[str, ...]


def check_shims(directory: str | os.PathLike[str]) -> CheckReport:
    """Check an installed directory as the shim would use it: the shim executable, its
    configuration, each real program, each link, and who may write them."""
    where = Path(directory).absolute()
    if not where.is_dir():
        return CheckReport(where, None, (), (f"{where} is not a directory",))
    problems: list[str] = []
    where_real = os.path.realpath(where)
    shim = where / SHIM_NAME
    if not (shim.is_file() and os.access(shim, os.X_OK)):
        problems.append(f"{shim} is missing or not executable")
    config: ShimConfig | None = None
    try:
        config = read_config(where / CONFIG_NAME)
    except ShimConfigError as e:
        problems.append(str(e))
    links = tuple(sorted(e for e in os.listdir(where) if _is_shim_link(where / e)))
    for target in (where, where / CONFIG_NAME, shim):
        with contextlib.suppress(OSError):
            if os.stat(target).st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                problems.append(f"{target} is writable by group or others: an agent could "
                                "change what the shim runs")
    if config is not None:
        for name, real in sorted(config.real.items()):
            if not (os.path.isfile(real) and os.access(real, os.X_OK)):
                problems.append(f"the real program for {name}, {real}, is missing or not "
                                "executable")
            elif _inside(os.path.realpath(real), where_real) or \
                    (shim.exists() and os.path.samefile(real, shim)):
                problems.append(f"the real program for {name}, {real}, is in {where}: the "
                                "shim would run itself")
        for name in links:
            if name not in config.real:
                problems.append(f"{where / name} links to the shim but {CONFIG_NAME} names "
                                "no real program for it: it is always denied")
        if config.spool is not None and not os.path.isdir(os.path.dirname(config.spool)):
            problems.append(f"the spool's directory {os.path.dirname(config.spool)} does "
                            "not exist")
    return CheckReport(where, config, links, tuple(problems))
