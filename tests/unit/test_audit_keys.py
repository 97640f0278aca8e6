"""Audit keys: precedence of sources, safe creation, refusal of exposed or malformed keys."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest

from gateway.audit.keys import AuditKey, AuditKeyError, load_key, writer_key

KEY_A = "aa" * 32
KEY_B = "bb" * 32
KEY_C = "cc" * 32


def key_file(tmp_path: Path, name: str, text: str, mode: int = 0o600) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_precedence_is_explicit_file_then_env_file_then_env_hex(tmp_path: Path) -> None:
    """An explicit key file wins over $GATEWAY_AUDIT_KEY_FILE, which wins over $GATEWAY_AUDIT_KEY."""
    explicit = key_file(tmp_path, "a", KEY_A)
    env = {"GATEWAY_AUDIT_KEY_FILE": key_file(tmp_path, "b", KEY_B + "\n"),
           "GATEWAY_AUDIT_KEY": KEY_C}
    assert load_key(key_file=explicit, environ=env, create=False) == bytes.fromhex(KEY_A)
    assert load_key(key_file=None, environ=env, create=False) == bytes.fromhex(KEY_B)
    assert load_key(key_file=None, environ={"GATEWAY_AUDIT_KEY": KEY_C},
                    create=False) == bytes.fromhex(KEY_C)
    assert load_key(key_file=None, environ={}, create=True) is None


def test_create_makes_a_private_random_key_once(tmp_path: Path) -> None:
    """create=True writes 32 random bytes as hex with mode 0600, and later calls read the same key."""
    path = tmp_path / "audit.key"
    first = load_key(key_file=str(path), environ={}, create=True)
    assert first is not None and len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(key_file=str(path), environ={}, create=True) == first
    assert load_key(key_file=str(path), environ={}, create=False) == first
    assert [p.name for p in tmp_path.iterdir()] == ["audit.key"]


BAD = [
    ("group_readable", KEY_A, 0o640, "readable by group or others"),
    ("world_readable", KEY_A, 0o604, "readable by group or others"),
    ("not_hex", "zz" * 32, 0o600, "must be hex"),
    ("too_short", "aa" * 8, 0o600, "too short"),
    ("binary", "\udcff", 0o600, "must be hex"),
]


@pytest.mark.parametrize(("text", "mode", "reason"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_key_files_are_refused(tmp_path: Path, text: str, mode: int, reason: str) -> None:
    """An exposed or malformed key is an AuditKeyError with the reason, never a silent fallback."""
    path = tmp_path / "k"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    path.chmod(mode)
    with pytest.raises(AuditKeyError, match=reason):
        load_key(key_file=str(path), environ={}, create=False)


def test_missing_key_file_without_create_is_an_error(tmp_path: Path) -> None:
    """A named key file that does not exist is an error unless create=True."""
    with pytest.raises(AuditKeyError, match="cannot read"):
        load_key(key_file=str(tmp_path / "none"), environ={}, create=False)
    with pytest.raises(AuditKeyError, match="cannot read"):
        load_key(key_file=None, environ={"GATEWAY_AUDIT_KEY_FILE": str(tmp_path / "none")},
                 create=True)


def test_a_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    """The key is not read through a symlink an agent might have planted."""
    target = key_file(tmp_path, "real", KEY_A)
    os.symlink(target, tmp_path / "link")
    with pytest.raises(AuditKeyError, match="cannot read"):
        load_key(key_file=str(tmp_path / "link"), environ={}, create=False)


@pytest.mark.parametrize("key", [b"k" * 16, b"k" * 32, b"k" * 64, b"k" * 100],
                         ids=["16", "32", "64", "100"])
def test_audit_key_matches_hmac_sha256(key: bytes) -> None:
    """The precomputed-pad HMAC equals the standard library's HMAC-SHA256."""
    data = b"0" * 64 + b'{"a":1}'
    assert AuditKey(key).hexdigest(data) == hmac.new(key, data, hashlib.sha256).hexdigest()


def test_unkeyed_is_plain_sha256_and_the_repr_hides_the_key() -> None:
    """Without a key the hash is SHA-256; no repr shows key bytes."""
    assert AuditKey(None).hexdigest(b"x") == hashlib.sha256(b"x").hexdigest()
    assert "kkkk" not in repr(AuditKey(b"k" * 32))


def test_writer_key_precedence(tmp_path: Path) -> None:
    """A writer's key: the file given; else the environment's; else LOG.key, generated."""
    log = tmp_path / "audit.jsonl"
    given = tmp_path / "given.key"
    assert writer_key(log, given, {"GATEWAY_AUDIT_KEY": "ab" * 16}) == load_key(
        key_file=str(given), environ={}, create=False)
    assert writer_key(log, None, {"GATEWAY_AUDIT_KEY": "ab" * 16}) == bytes.fromhex("ab" * 16)
    assert not (tmp_path / "audit.jsonl.key").exists()
    generated = writer_key(log, None, {})
    assert generated is not None and (tmp_path / "audit.jsonl.key").exists()
    assert writer_key(log, None, {}) == generated
