"""The audit key: where it comes from, and the keyed hash it makes.

The key stays with the gateway: a file with mode 0600 (created on first start), a
secret file named by $GATEWAY_AUDIT_KEY_FILE, or hex in $GATEWAY_AUDIT_KEY. Without
one the log is unkeyed (plain SHA-256), which proves nothing against anyone who can
write the file; the log's genesis entry says so and every reader says so loudly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from gateway.errors import GatewayError

KEY_BYTES = 32
MIN_KEY_BYTES = 16
ENV_KEY_FILE = "GATEWAY_AUDIT_KEY_FILE"
ENV_KEY = "GATEWAY_AUDIT_KEY"


class AuditKeyError(GatewayError):
    """A key that cannot be used: unreadable, malformed, or exposed to other users."""


class AuditKey:
    """HMAC-SHA256 under a key, or plain SHA-256 without one.

    The HMAC pads are hashed once here, so each entry costs two SHA-256 copies and
    updates instead of a fresh `hmac.new`. The repr never shows the key.
    """

    __slots__ = ("_inner", "_outer", "keyed")

    def __init__(self, key: bytes | None) -> None:
        self.keyed = key is not None
        if key is None:
            self._inner = hashlib.sha256()
            self._outer = None
            return
        if len(key) < MIN_KEY_BYTES:
            raise AuditKeyError(f"audit key too short: {len(key)} bytes, need at least "
                                f"{MIN_KEY_BYTES}")
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer: hashlib._Hash | None = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def __repr__(self) -> str:
        return f"AuditKey(keyed={self.keyed})"

    def hexdigest(self, data: bytes) -> str:
        """HMAC-SHA256(key, data) in hex, or SHA-256(data) when unkeyed."""
        inner = self._inner.copy()
        inner.update(data)
        if self._outer is None:
            return inner.hexdigest()
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def load_key(*, key_file: str | None, environ: Mapping[str, str],
             create: bool) -> bytes | None:
    """The audit key, or None when none is configured.

    Precedence: `key_file`; then $GATEWAY_AUDIT_KEY_FILE; then $GATEWAY_AUDIT_KEY (hex).
    With `create`, a missing `key_file` is generated (32 random bytes, hex, mode 0600).
    A key file that group or others may read is refused: a key they can read is a key
    they can forge with.
    """
    if key_file:
        path = Path(key_file)
        if create and not path.exists():
            _create(path)
        return _read(path)
    env_file = environ.get(ENV_KEY_FILE)
    if env_file:
        return _read(Path(env_file))
    env_key = environ.get(ENV_KEY)
    if env_key:
        return _parse(env_key, f"${ENV_KEY}")
    return None


def writer_key(log: str | os.PathLike[str], key_file: str | os.PathLike[str] | None,
               environ: Mapping[str, str]) -> bytes | None:
    """The key a writer of `log` uses: `key_file` when given; else the environment's
    ($GATEWAY_AUDIT_KEY_FILE, then $GATEWAY_AUDIT_KEY); else `LOG.key`, generated on
    first use. A key file that does not exist yet is generated too."""
    if key_file:
        return load_key(key_file=os.fspath(key_file), environ={}, create=True)
    if environ.get(ENV_KEY_FILE) or environ.get(ENV_KEY):
        return load_key(key_file=None, environ=environ, create=False)
    return load_key(key_file=f"{os.fspath(log)}.key", environ={}, create=True)


def _parse(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise AuditKeyError(f"{where}: the audit key must be hex") from None
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyError(f"{where}: audit key too short ({len(key)} bytes, need at "
                            f"least {MIN_KEY_BYTES})")
    return key


def _read(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise AuditKeyError(f"{path}: cannot read the audit key: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AuditKeyError(f"{path}: the audit key is not a regular file")
        if info.st_mode & 0o077:
            raise AuditKeyError(f"{path}: the audit key is readable by group or others "
                                f"(mode {stat.S_IMODE(info.st_mode):04o}); chmod 600 it")
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise AuditKeyError(f"{path}: the audit key must be hex text") from None
    return _parse(text, str(path))


def _create(path: Path) -> None:
    """Write a new key so that no reader ever sees a partial one: a private temporary
    file, fsynced, then linked into place (which fails if another process won)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise AuditKeyError(f"{path}: cannot create the audit key: {e.strerror}") from None
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (secrets.token_bytes(KEY_BYTES).hex() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
        _fsync_dir(path.parent)
    except OSError as e:
        raise AuditKeyError(f"{path}: cannot create the audit key: {e.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
