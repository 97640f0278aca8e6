"""The write watcher: real files under a real watcher, entries read back from a real
audit log, which must verify afterwards."""

from __future__ import annotations

import errno
import json
import mmap
import os
import shutil
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.verify import verify_log
from gateway.audit.writer import AuditWriter
from gateway.engine import Decision, Request
from gateway.errors import GatewayError
from gateway.fs.watch import WriteWatcher
from gateway.runtime import Runtime

KEY = b"k" * 32
QUEUE_KNOB = Path("/proc/sys/fs/inotify/max_queued_events")
Entry = dict[str, Any]


def policy(allowed: str, mode: str = "enforce") -> str:
    return (f"version: 1\ndefault: deny\nmode: {mode}\nrules:\n"
            f'  - {{action: file_write, path: "{allowed}/**", effect: allow}}\n'
            '  - {action: file_write, path: ["*.pem", ".git/hooks/**"], effect: deny, '
            'reason: "secrets and hooks"}\n')


class Setup:
    """A runtime on tmp_path with the test policy, a watched directory `w`, and the
    entries of its log once the watcher has stopped."""

    def __init__(self, tmp_path: Path, writer: AuditWriter, runtime: Runtime) -> None:
        self.tmp, self.writer, self.runtime = tmp_path, writer, runtime
        self.w = tmp_path / "w"

    def watching(self, **options: Any) -> WriteWatcher:
        """A watcher on `w`, to use as a context: started, then stopped (and flushed)."""
        return WriteWatcher(self.runtime, [self.w], **options)

    def entries(self) -> list[Entry]:
        with open(self.tmp / "audit.jsonl", "rb") as f:
            return [json.loads(line) for line in f]

    def fs(self) -> list[Entry]:
        return [e for e in self.entries() if e["source"] == "fs"]

    def rescans(self) -> list[Entry]:
        return [e for e in self.entries() if e.get("event") == "fs rescan"]

    def verifies(self) -> bool:
        return verify_log(self.tmp / "audit.jsonl", key=KEY).ok


@contextmanager
def opened(tmp_path: Path, text: str) -> Iterator[Setup]:
    (tmp_path / "policy.yaml").write_text(text)
    with AuditWriter(tmp_path / "audit.jsonl", key=KEY) as writer:
        yield Setup(tmp_path, writer, Runtime(tmp_path / "policy.yaml", writer))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    (tmp_path / "w").mkdir()
    with opened(tmp_path, policy(str(tmp_path / "w"))) as s:
        yield s


def events(entries: list[Entry], path: Path | str) -> list[str]:
    return [e["event"] for e in entries if e["path"] == str(path)]


def write(path: Path, text: str = "x") -> None:
    with open(path, "w") as f:
        f.write(text)


def test_create_modify_move_and_delete_each_make_an_entry(setup: Setup) -> None:
    """Each kind of change is one entry with the event, the allowed verdict and its
    rule; a move names its source and is decided on its destination."""
    a, b, d = setup.w / "a.txt", setup.w / "b.txt", setup.w / "d"
    with setup.watching():
        write(a)
        time.sleep(0.3)  # past the window that folds a write into the creation
        write(a, "more")
        a.rename(b)
        b.unlink()
        d.mkdir()
    entries = setup.fs()
    assert events(entries, a) == ["created", "modified"]
    assert events(entries, b) == ["moved", "deleted"]
    assert events(entries, d) == ["created"]
    move = next(e for e in entries if e["event"] == "moved")
    assert move["src"] == str(a) and move["action"] == "file_write"
    assert all(e["verdict"] == "ALLOW" and e["rule"] == 0 and "rescan" not in e
               for e in entries)
    assert setup.verifies()


def test_a_denied_write_is_flagged_in_its_entry_and_listed(setup: Setup) -> None:
    """A write the policy denies is DENY in the entry, with the rule's reason, and is in
    denied_paths(); allowed writes are not."""
    hooks = setup.w / ".git" / "hooks"
    hooks.mkdir(parents=True)
    with setup.watching() as watcher:
        write(setup.w / "secret.pem")
        write(hooks / "pre-commit")
        write(setup.w / "ok.txt")
    by_path = {e["path"]: e for e in setup.fs()}
    for denied in (setup.w / "secret.pem", hooks / "pre-commit"):
        assert by_path[str(denied)]["verdict"] == "DENY"
        assert by_path[str(denied)]["reason"] == "secrets and hooks"
    assert by_path[str(setup.w / "ok.txt")]["verdict"] == "ALLOW"
    assert watcher.denied_paths() == {str(setup.w / "secret.pem"), str(hooks / "pre-commit")}


def test_moves_are_denied_onto_a_denied_path_and_off_one(setup: Setup) -> None:
    """Renaming a file to a denied name is a denied write of that name; moving a
    protected file away is a denied write of the protected path too."""
    hooks = setup.w / ".git" / "hooks"
    hooks.mkdir(parents=True)
    write(setup.w / "a.txt")
    write(hooks / "post-merge")
    with setup.watching() as watcher:
        (setup.w / "a.txt").rename(setup.w / "a.pem")
        (hooks / "post-merge").rename(setup.w / "post-merge")
    entries = setup.fs()
    onto = next(e for e in entries if e["path"] == str(setup.w / "a.pem"))
    assert (onto["event"], onto["verdict"], onto["src"]) == ("moved", "DENY", str(setup.w / "a.txt"))
    off = [e for e in entries if e["path"] == str(hooks / "post-merge")]
    assert [(e["event"], e["verdict"], e["dest"]) for e in off] == [
        ("moved", "DENY", str(setup.w / "post-merge"))]
    assert watcher.denied_paths() == {str(setup.w / "a.pem"), str(hooks / "post-merge")}


def test_a_directory_moved_in_the_tree_moves_each_file_under_its_new_path(setup: Setup) -> None:
    """Renaming a directory to .git/hooks is a move of each file in it, decided where it
    lands: hooks are denied."""
    (setup.w / "tools").mkdir()
    (setup.w / ".git").mkdir()
    write(setup.w / "tools" / "run.sh")
    with setup.watching():
        (setup.w / "tools").rename(setup.w / ".git" / "hooks")
    moves = {e["path"]: (e["src"], e["verdict"]) for e in setup.fs() if "src" in e}
    assert moves == {
        str(setup.w / ".git" / "hooks"): (str(setup.w / "tools"), "DENY"),
        str(setup.w / ".git" / "hooks" / "run.sh"): (str(setup.w / "tools" / "run.sh"), "DENY"),
    }


def test_a_directory_moved_out_takes_its_contents_with_it(setup: Setup) -> None:
    """Moving a directory out of the watched tree deletes everything in it: one entry per
    path, so a protected file inside is decided as itself."""
    (setup.w / "proj" / ".git" / "hooks").mkdir(parents=True)
    write(setup.w / "proj" / ".git" / "hooks" / "pre-push")
    with setup.watching() as watcher:
        shutil.move(setup.w / "proj", setup.tmp / "elsewhere")
    deleted = {e["path"]: e["verdict"] for e in setup.fs() if e["event"] == "deleted"}
    hook = str(setup.w / "proj" / ".git" / "hooks" / "pre-push")
    assert deleted[hook] == "DENY" and deleted[str(setup.w / "proj")] == "ALLOW"
    assert len(deleted) == 4
    assert hook in watcher.denied_paths()


def test_path_map_names_the_agents_paths(tmp_path: Path) -> None:
    """A watched upper directory mapped to the mount's target: decisions and entries use
    the target's paths, which the policy is written for."""
    upper = tmp_path / "upper"
    upper.mkdir()
    with opened(tmp_path, policy("/work/project")) as s:
        watcher = WriteWatcher(s.runtime, [upper], agent="coder",
                               path_map={upper: "/work/project"})
        with watcher:
            write(upper / "main.py")
            write(upper / "id.pem")
        entries = {e["path"]: e for e in s.fs()}
    assert set(entries) == {"/work/project/main.py", "/work/project/id.pem"}
    assert entries["/work/project/main.py"]["verdict"] == "ALLOW"
    assert entries["/work/project/id.pem"]["agent"] == "coder"
    assert watcher.denied_paths() == {"/work/project/id.pem"}


def test_simulate_mode_records_would_deny_and_lists_nothing(tmp_path: Path) -> None:
    """Simulate mode blocks nothing: the deny is recorded with mode simulate, and the
    commit is not asked to leave anything out."""
    (tmp_path / "w").mkdir()
    with opened(tmp_path, policy(str(tmp_path / "w"), mode="simulate")) as s, \
            s.watching() as watcher:
        write(s.w / "k.pem")
    [entry] = s.fs()
    assert (entry["verdict"], entry["mode"]) == ("DENY", "simulate")
    assert watcher.denied_paths() == frozenset()


def test_modifications_are_coalesced_but_no_create_or_delete_is_dropped(setup: Setup) -> None:
    """A hundred writes to one file make at most one entry per 100 ms of writing; twenty
    create-delete cycles of another make twenty of each."""
    log, flip = setup.w / "log.txt", setup.w / "flip"
    write(log)
    with setup.watching() as watcher, open(log, "a") as f:
        started = time.monotonic()
        for _ in range(100):
            f.write("line\n")
            f.flush()
            time.sleep(0.002)
        writing = time.monotonic() - started
        for _ in range(20):
            write(flip)
            flip.unlink()
    entries = setup.fs()
    assert 1 <= len(events(entries, log)) <= writing / 0.1 + 1 < 100
    assert Counter(events(entries, flip)) == {"created": 20, "deleted": 20}
    assert watcher.stats.coalesced > 0


@pytest.mark.parametrize(("change", "expected"), [
    pytest.param(lambda w: os.chmod(w / "f", 0o755), ["modified"], id="file mode"),
    pytest.param(lambda w: os.utime(w / "f", (1, 1)), ["modified"], id="file times"),
    pytest.param(lambda w: os.chmod(w / "d", 0o700), ["modified"], id="directory mode"),
    pytest.param(lambda w: os.utime(w / "d", (1, 1)), [], id="directory times"),
    pytest.param(lambda w: os.utime(w, (1, 1)), [], id="watched directory times"),
])
def test_metadata_changes(setup: Setup, change: Callable[[Path], None],
                          expected: list[str]) -> None:
    """A file's metadata is written like its content; a directory's times change with
    its children (and an overlay's bookkeeping), so only its mode counts."""
    write(setup.w / "f")
    (setup.w / "d").mkdir()
    with setup.watching():
        change(setup.w)
    assert [e["event"] for e in setup.fs()] == expected


def test_a_burst_of_10000_files_is_recorded_file_by_file(setup: Setup) -> None:
    """10,000 files created in a loop: each has exactly one creation in the log, by its
    event or, where the kernel dropped events, by a rescan that is itself recorded."""
    with setup.watching() as watcher:
        for n in range(10_000):
            write(setup.w / f"f{n}")
    entries = setup.fs()
    created = Counter(e["path"] for e in entries if e["event"] == "created")
    assert created == Counter({str(setup.w / f"f{n}"): 1 for n in range(10_000)})
    assert {e["event"] for e in entries} <= {"created", "modified"}
    found = [e for e in entries if e.get("rescan")]
    if found or watcher.stats.overflows:
        assert setup.rescans() and watcher.stats.found == len(found)
    assert watcher.stats.errors == 0
    assert setup.verifies()


@contextmanager
def kernel_queue(size: int) -> Iterator[None]:
    """The kernel's inotify queue size for instances made inside the block (a system-wide
    setting: restored as soon as the block ends)."""
    try:
        old = QUEUE_KNOB.read_text()
        QUEUE_KNOB.write_text(str(size))
    except OSError as e:
        pytest.skip(f"cannot set {QUEUE_KNOB}: {e.strerror}")
    try:
        yield
    finally:
        QUEUE_KNOB.write_text(old)


def test_events_the_kernel_drops_are_found_by_a_rescan(setup: Setup) -> None:
    """With a 32-event kernel queue the burst overflows it: the rescans are noted in the
    log with their reasons, and every file still has exactly one creation."""
    (setup.w / "sub").mkdir()
    watcher = WriteWatcher(setup.runtime, [setup.w])
    with kernel_queue(32):
        watcher.start()
    with watcher:
        for n in range(2_000):
            write(setup.w / ("sub" if n % 2 else "") / f"f{n}")
    assert watcher.stats.overflows >= 1
    reasons = Counter(n["reason"] for n in setup.rescans())
    assert reasons["the kernel's inotify queue overflowed"] >= 1
    assert set(reasons) <= {"the kernel's inotify queue overflowed",
                            "a check after lost events found changes no event reported",
                            "the check at stop found changes no event reported"}
    assert sum(n["changes"] for n in setup.rescans()) == watcher.stats.found > 0
    created = Counter(e["path"] for e in setup.fs() if e["event"] == "created")
    assert sorted(created) == sorted(str(setup.w / ("sub" if n % 2 else "") / f"f{n}")
                                     for n in range(2_000))
    assert set(created.values()) == {1}
    assert setup.verifies()


def test_a_worker_that_falls_behind_drops_to_a_rescan(setup: Setup,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """When more events wait than the bound, the watcher stops queueing, rescans, says
    why, and still records every file once."""
    decide: Callable[..., Decision] = setup.runtime.decide
    stalled: list[bool] = []

    def slow(request: Request, fs: Any = None) -> Decision:
        if not stalled:
            stalled.append(True)
            time.sleep(0.5)
        return decide(request, fs)

    monkeypatch.setattr(setup.runtime, "decide", slow)
    with setup.watching(max_queued=50) as watcher:
        for n in range(500):
            write(setup.w / f"f{n}")
    notes = setup.rescans()
    assert notes[0]["reason"] == "more than 50 events waited to be recorded"
    assert watcher.stats.overflows >= 1
    created = Counter(e["path"] for e in setup.fs() if e["event"] == "created")
    assert created == Counter({str(setup.w / f"f{n}"): 1 for n in range(500)})


def test_a_change_no_event_reports_is_found_by_the_periodic_rescan(setup: Setup) -> None:
    """A write through a shared mapping raises no inotify event while the mapping lives;
    the periodic rescan finds it, records it marked `rescan`, and notes why."""
    data = setup.w / "data.bin"
    data.write_bytes(b"\0" * 4096)
    before = data.stat().st_mtime_ns
    with setup.watching(rescan_every=0.2) as watcher, open(data, "r+b") as f, \
            mmap.mmap(f.fileno(), 4096) as mapped:
        time.sleep(0.05)
        mapped[:5] = b"hello"
        mapped.flush()
        if data.stat().st_mtime_ns == before:
            pytest.skip("this filesystem does not update mtime on writes to a mapping")
        deadline = time.monotonic() + 5
        while watcher.stats.found == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    [entry] = setup.fs()
    assert (entry["path"], entry["event"], entry["rescan"]) == (str(data), "modified", True)
    [note] = setup.rescans()
    assert note["reason"] == "a periodic check found changes no event reported"
    assert note["path"] == str(setup.w) and note["changes"] == 1


def test_an_overlay_whiteout_is_recorded_as_a_deletion(setup: Setup) -> None:
    """In an overlay's upper directory a deletion appears as a 0/0 character device."""
    with setup.watching():
        try:
            os.mknod(setup.w / "gone.txt", stat.S_IFCHR | 0o600, os.makedev(0, 0))
        except PermissionError:
            pytest.skip("making a character device needs CAP_MKNOD")
    assert events(setup.fs(), setup.w / "gone.txt") == ["deleted"]


def test_an_undecodable_name_is_recorded_escaped(setup: Setup) -> None:
    """A file name that is not UTF-8 is recorded with its bytes escaped, and the log
    still verifies."""
    with setup.watching():
        write(Path(os.fsdecode(os.fsencode(setup.w) + b"/bad\xff.pem")))
    [entry] = setup.fs()
    assert entry["path"] == f"{setup.w}/bad\\xff.pem" and entry["verdict"] == "DENY"
    assert setup.verifies()


def test_directories_that_cannot_be_watched_are_refused(tmp_path: Path) -> None:
    """A missing directory, overlapping directories and a path_map for a directory not
    watched are errors that say what is wrong."""
    (tmp_path / "w" / "inner").mkdir(parents=True)
    with opened(tmp_path, policy(str(tmp_path / "w"))) as s:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"directories": [tmp_path / "nope"]}, "not a directory"),
            ({"directories": [s.w, s.w / "inner"]}, "overlaps"),
            ({"directories": [s.w / "inner", s.w]}, "overlaps"),
            ({"directories": [s.w], "path_map": {tmp_path: "/x"}}, "not watched"),
            ({"directories": [s.w], "path_map": {s.w: "relative"}}, "not absolute"),
        ]
        for kwargs, message in cases:
            with pytest.raises(GatewayError, match=message):
                WriteWatcher(s.runtime, **kwargs)


def test_a_watch_the_kernel_refuses_is_an_error_at_start(setup: Setup,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the inotify watch limit start() raises GatewayError naming the directory
    and the limit, and leaves no thread running."""
    from watchdog.observers.inotify_c import InotifyFD

    class Full(InotifyFD):
        def add_callback(self, *args: Any, **kwargs: Any) -> Any:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr("gateway.fs.watch.InotifyFD", Full)
    before = threading.active_count()
    watcher = setup.watching()
    with pytest.raises(GatewayError, match=f"{setup.w}: cannot watch it: inotify watch limit"):
        watcher.start()
    assert threading.active_count() == before
    watcher.stop()  # nothing to stop: no error either
