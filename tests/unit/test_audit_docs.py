"""docs/audit.md stays true: its standalone verifier checks real logs the writer made."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.audit.reader import segment_paths
from gateway.audit.verify import verify_log
from gateway.audit.writer import AuditWriter

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "audit.md").read_text()
KEY_HEX = "5a" * 32


def doc_verifier(tmp_path: Path) -> Path:
    blocks = re.findall(r"```python\n(.*?)```", DOC, re.S)
    assert len(blocks) == 1
    assert len(blocks[0].splitlines()) <= 35
    script = tmp_path / "verify_doc.py"
    script.write_text(blocks[0])
    return script


def make_log(tmp_path: Path, keyed: bool) -> tuple[Path, str]:
    log = tmp_path / "audit.jsonl"
    key_file = tmp_path / "key"
    key_file.write_text(KEY_HEX)
    with AuditWriter(log, key=bytes.fromhex(KEY_HEX) if keyed else None, rotate_bytes=3000) as w:
        for n in range(40):
            w.append({"source": "sdk", "agent": "a\u00e9\u2028\U0001f600", "action": "file_read",
                      "path": f"/p/\"{n}\"\\\n\x00", "verdict": "DENY", "rule": n, "big": -(2**53 - 1),
                      "flag": n % 2 == 0, "none": None})
    return log, str(key_file) if keyed else "-"


def run(script: Path, key: str, log: Path) -> subprocess.CompletedProcess[str]:
    paths = [str(p) for p in segment_paths(log)]
    return subprocess.run([sys.executable, str(script), key, *paths], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
def test_the_documented_verifier_accepts_a_real_log(tmp_path: Path, keyed: bool) -> None:
    """The doc's ~20-line verifier agrees with verify_log on a rotated log with awkward strings."""
    script = doc_verifier(tmp_path)
    log, key = make_log(tmp_path, keyed)
    assert len(segment_paths(log)) > 2
    result = run(script, key, log)
    assert result.returncode == 0, result.stderr
    ours = verify_log(log, key=bytes.fromhex(KEY_HEX) if keyed else None)
    assert result.stdout.strip() == str((ours.entries, ours.head_hash))


def test_the_documented_verifier_rejects_an_edit(tmp_path: Path) -> None:
    """Changing one field makes the doc's verifier fail too."""
    script = doc_verifier(tmp_path)
    log, key = make_log(tmp_path, True)
    lines = log.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[-1])
    entry["verdict"] = "ALLOW"
    lines[-1] = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    log.write_bytes(b"".join(lines))
    result = run(script, key, log)
    assert result.returncode != 0 and "bad entry" in result.stderr
