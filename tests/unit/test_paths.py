"""File paths and path globs: normalisation, kernel-like resolution, glob semantics, index."""

from __future__ import annotations

import functools
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import time
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.matching.paths import (
    MAX_PATH,
    BadPath,
    PathIndex,
    compile_path_glob,
    is_catch_all_path,
    normalise_path,
    resolve_path,
)

# --- normalise_path -----------------------------------------------------------------

NORMALISE = [
    ("absolute", "/a/b", "/cwd", "/a/b"),
    ("root", "/", "/cwd", "/"),
    ("relative", "a/b", "/cwd", "/cwd/a/b"),
    ("relative-dot", ".", "/cwd", "/cwd"),
    ("dot-segments", "/a/./b/.", "/cwd", "/a/b"),
    ("dotdot", "/a/b/../c", "/cwd", "/a/c"),
    ("dotdot-past-root", "/../../etc/passwd", "/cwd", "/etc/passwd"),
    ("relative-dotdot-past-root", "../../../x", "/cwd", "/x"),
    ("double-slash", "/a//b///c", "/cwd", "/a/b/c"),
    ("leading-double-slash", "//etc/passwd", "/cwd", "/etc/passwd"),
    ("trailing-slash", "/a/b/", "/cwd", "/a/b"),
    ("cwd-folded-too", "x", "/c/./d/../e/", "/c/e/x"),
    ("dotfile-kept", "/a/.env", "/cwd", "/a/.env"),
    ("dots-in-names-kept", "/a/...b/..c./...", "/cwd", "/a/...b/..c./..."),
    ("relative-cwd-ignored-for-absolute", "/a", "relative", "/a"),
    ("non-ascii", "/проект/файл", "/cwd", "/проект/файл"),
    ("case-kept", "/A/B", "/cwd", "/A/B"),
]


@pytest.mark.parametrize(("path", "cwd", "expected"), [c[1:] for c in NORMALISE],
                         ids=[c[0] for c in NORMALISE])
def test_normalise_path(path: str, cwd: str, expected: str) -> None:
    """Paths become absolute with `.`, `..` and `//` folded lexically."""
    assert normalise_path(path, cwd) == expected


BAD_PATHS = [
    ("empty", "", "/cwd", "empty path"),
    ("nul", "/a\x00b", "/cwd", "path contains a NUL byte"),
    ("newline", "/a\nb", "/cwd", "path contains a control character (U+000A)"),
    ("escape", "/a\x1b[31m", "/cwd", "path contains a control character (U+001B)"),
    ("delete", "/a\x7f", "/cwd", "path contains a control character (U+007F)"),
    ("c1-control", "/a\x85", "/cwd", "path contains a control character (U+0085)"),
    ("lone-surrogate", "/a\udcff", "/cwd", "path contains undecodable bytes"),
    ("too-long", "/" + "a" * MAX_PATH, "/cwd", f"path longer than {MAX_PATH} bytes"),
    ("too-long-in-bytes", "/" + "é" * (MAX_PATH // 2), "/cwd",
     f"path longer than {MAX_PATH} bytes"),
    ("joined-too-long", "a" * 3000, "/" + "b" * 3000, f"path longer than {MAX_PATH} bytes"),
    ("relative-cwd", "a", "cwd", "cwd is not absolute"),
    ("empty-cwd", "a", "", "empty cwd"),
    ("cwd-nul", "a", "/c\x00", "cwd contains a NUL byte"),
    ("not-a-string", None, "/cwd", "path is not a string"),
]


@pytest.mark.parametrize(("path", "cwd", "reason"), [c[1:] for c in BAD_PATHS],
                         ids=[c[0] for c in BAD_PATHS])
def test_normalise_path_refuses_bad_input(path: str, cwd: str, reason: str) -> None:
    """Input that names no file raises BadPath, a ValueError, with the reason."""
    with pytest.raises(BadPath) as caught:
        normalise_path(path, cwd)
    assert str(caught.value) == reason
    assert isinstance(caught.value, ValueError)


def test_normalise_path_accepts_the_longest_path() -> None:
    """A path of exactly MAX_PATH bytes is accepted."""
    path = "/" + "a" * (MAX_PATH - 1)
    assert normalise_path(path, "/") == path


_path_text = st.lists(st.sampled_from(["a", "b", ".", "..", "", ".x", "é"]), max_size=12).map(
    "/".join)


@given(_path_text, _path_text)
def test_normalise_path_is_idempotent(path: str, cwd: str) -> None:
    """Normalising a normalised path changes nothing."""
    path = path or "."
    once = normalise_path(path, "/" + cwd)
    assert normalise_path(once, "/elsewhere") == once
    assert once.startswith("/")
    assert once == "/" or not once.endswith("/")


@given(_path_text)
def test_normalise_path_agrees_with_normpath(path: str) -> None:
    """For absolute paths without a leading `//`, the result is posixpath.normpath's."""
    path = "/" + path.lstrip("/")
    assert normalise_path(path, "/") == posixpath.normpath(path)


# --- resolve_path -----------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A project and a secret directory, with links between them."""
    root = tmp_path.resolve()
    (root / "project/workspace").mkdir(parents=True)
    (root / "project/workspace/file").write_text("x")
    (root / "secret/x").mkdir(parents=True)
    (root / "secret/key").write_text("k")
    ws = root / "project/workspace"
    (ws / "link").symlink_to(root / "secret/x")           # absolute target
    (ws / "rel").symlink_to("../../secret/x")             # relative target
    (ws / "dangling").symlink_to(root / "nowhere/file")
    (ws / "loop-a").symlink_to("loop-b")
    (ws / "loop-b").symlink_to("loop-a")
    (ws / "self").symlink_to("self")
    (ws / "chain").symlink_to("rel")                       # link to a link
    (ws / "dotlink").symlink_to(".")
    (root / "cwdlink").symlink_to(ws)
    return root


RESOLVE = [
    ("plain-file", "project/workspace/file", "project/workspace/file"),
    ("link-then-dotdot", "project/workspace/link/../key", "secret/key"),
    ("relative-target-then-dotdot", "project/workspace/rel/../key", "secret/key"),
    ("link-target", "project/workspace/link", "secret/x"),
    ("beneath-link", "project/workspace/link/new/file", "secret/x/new/file"),
    ("chain-of-links", "project/workspace/chain/../key", "secret/key"),
    ("dangling-link", "project/workspace/dangling", "nowhere/file"),
    ("missing-tail-lexical", "project/workspace/a/b/../c", "project/workspace/a/c"),
    ("missing-then-back-into-link", "project/workspace/nope/../link/../key", "secret/key"),
    ("file-is-not-a-directory", "project/workspace/file/x/..", "project/workspace/file"),
    ("dot-link", "project/workspace/dotlink/dotlink/file", "project/workspace/file"),
    ("dot-and-slashes", "project//workspace/./file", "project/workspace/file"),
]


@pytest.mark.parametrize(("written", "expected"), [c[1:] for c in RESOLVE],
                         ids=[c[0] for c in RESOLVE])
def test_resolve_path(tree: Path, written: str, expected: str) -> None:
    """Symlinks are followed component by component, before `..`, as the kernel does."""
    assert resolve_path(f"{tree}/{written}") == f"{tree}/{expected}"


def test_resolve_path_agrees_with_the_kernel_where_the_file_exists(tree: Path) -> None:
    """Where the target exists, the answer is os.path.realpath's."""
    for written in ("project/workspace/link/../key", "project/workspace/chain/../key",
                    "cwdlink/rel/../key", "project/workspace/dotlink/file"):
        path = f"{tree}/{written}"
        assert os.path.exists(path)
        assert resolve_path(path) == os.path.realpath(path)


def test_resolve_path_relative_to_a_linked_cwd(tree: Path) -> None:
    """A relative path is taken from cwd, and links in cwd are resolved too."""
    assert resolve_path("link/../key", cwd=f"{tree}/cwdlink") == f"{tree}/secret/key"


@pytest.mark.parametrize(("written", "reason"), [
    pytest.param("project/workspace/loop-a", "too many levels of symbolic links", id="loop"),
    pytest.param("project/workspace/self/x", "too many levels of symbolic links",
                 id="self-loop"),
])
def test_resolve_path_refuses_loops(tree: Path, written: str, reason: str) -> None:
    """A symlink loop raises BadPath instead of spinning."""
    with pytest.raises(BadPath, match=reason):
        resolve_path(f"{tree}/{written}")


@pytest.mark.parametrize(("path", "cwd", "reason"), [
    pytest.param("a/b", None, "path is not absolute", id="relative-without-cwd"),
    pytest.param("a/b", "rel", "cwd is not absolute", id="relative-cwd"),
    pytest.param("/a\x00", None, "path contains a NUL byte", id="nul"),
    pytest.param("", None, "empty path", id="empty"),
    pytest.param("/\udc80", None, "path contains undecodable bytes", id="surrogate"),
])
def test_resolve_path_refuses_bad_input(path: str, cwd: str | None, reason: str) -> None:
    """Bad input raises BadPath with the reason, before touching the filesystem."""
    with pytest.raises(BadPath) as caught:
        resolve_path(path, cwd=cwd)
    assert str(caught.value) == reason


def test_resolve_path_refuses_what_it_cannot_examine() -> None:
    """A directory that cannot be searched fails closed with the reason (as root, checked in
    a child process running as nobody, since root searches every directory)."""
    base = Path(tempfile.mkdtemp(prefix="gateway-locked-"))
    try:
        base.chmod(0o755)
        locked = base / "locked"
        (locked / "inner").mkdir(parents=True)
        locked.chmod(0)
        drop = "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n" if os.geteuid() == 0 else ""
        code = ("import os\nfrom gateway.matching.paths import resolve_path, BadPath\n"
                + drop +
                "try:\n"
                f"    resolve_path({str(locked)!r} + '/inner/x')\n"
                "except BadPath as e:\n"
                "    print(e)\n")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=60, check=False, env=env)
        assert re.search(r"cannot resolve .*/locked/inner: Permission denied", result.stdout), (
            result.stdout + result.stderr)
    finally:
        (base / "locked").chmod(0o755)
        shutil.rmtree(base)


def test_resolve_path_refuses_names_the_kernel_refuses(tree: Path) -> None:
    """A component longer than the file system allows fails closed with the reason."""
    with pytest.raises(BadPath, match=r"cannot resolve .*: File name too long"):
        resolve_path(f"{tree}/{'a' * 300}/x")


def test_resolve_path_refuses_undecodable_link_targets(tree: Path) -> None:
    """A link target with undecodable bytes gives BadPath, not a path to match."""
    os.symlink(b"/tmp/\xff", os.fsencode(tree / "bad"))
    with pytest.raises(BadPath, match="resolved path contains undecodable bytes"):
        resolve_path(f"{tree}/bad")


# --- globs ---------------------------------------------------------------------------

# (id, pattern, path, matches): each row one point of the glob semantics.
GLOBS = [
    # the engine issue's example table (PROJECT_DIR=/project, HOME=/home/user)
    ("issue-workspace-allow", "/project/workspace/**", "/project/workspace/analyze.py", True),
    ("issue-dotenv-in-workspace", "*/.env", "/project/workspace/.env", True),
    ("issue-ssh-key-by-dotdir", "*/.*", "/home/user/.ssh/id_rsa", True),
    ("issue-passwd-not-workspace", "/project/workspace/**", "/etc/passwd", False),
    ("issue-passwd-no-dotfile", "*/.*", "/etc/passwd", False),
    # `*` and `?` stay within one segment
    ("star-one-segment", "/a/*/c", "/a/b/c", True),
    ("star-not-across-slash", "/a/*/c", "/a/b/x/c", False),
    ("star-empty", "/a/b*", "/a/b", True),
    ("star-matches-dotfiles", "/a/*", "/a/.hidden", True),
    ("question-one-char", "/a/?", "/a/b", True),
    ("question-not-empty", "/a/b?", "/a/b", False),
    ("question-not-slash", "/a?b", "/a/b", False),
    ("stars-inside-segment-are-one-star", "/a/x**y", "/a/xzzy", True),
    ("stars-inside-segment-not-across", "/a/x**y", "/a/x/y", False),
    # `**` across segments
    ("globstar-zero", "/a/**/b", "/a/b", True),
    ("globstar-many", "/a/**/b", "/a/x/y/b", True),
    ("globstar-not-partial-name", "/a/**/b", "/a/xb", False),
    ("globstar-alone", "**", "/anything/at/all", True),
    ("globstar-alone-root", "**", "/", True),
    ("slash-globstar", "/**", "/etc/shadow", True),
    ("slash-globstar-root", "/**", "/", True),
    ("globstar-twice", "/a/**/b/**/c", "/a/1/b/2/3/c", True),
    ("globstar-twice-order", "/a/**/b/**/c", "/a/c/b", False),
    ("globstar-leading-anchored-is-any-depth", "/**/id_rsa", "/home/u/.ssh/id_rsa", True),
    # `X/**` is X and everything beneath
    ("dir-globstar-itself", "/project/data/**", "/project/data", True),
    ("dir-globstar-beneath", "/project/data/**", "/project/data/a/b", True),
    ("dir-globstar-sibling", "/project/data/**", "/project/database", False),
    ("dir-globstar-parent", "/project/data/**", "/project", False),
    # a pattern that matches a directory matches everything beneath it
    ("literal-dir-beneath", "/etc", "/etc/passwd", True),
    ("literal-dir-not-prefix-text", "/etc", "/etcetera", False),
    ("wild-dir-beneath", "/home/*/.ssh", "/home/u/.ssh/id_rsa", True),
    ("name-dir-beneath", ".git", "/p/.git/config", True),
    # unanchored patterns match at any depth
    ("name-any-depth", ".env", "/a/b/.env", True),
    ("name-at-top", ".env", "/.env", True),
    ("name-not-root", ".env", "/", False),
    ("name-whole-component", ".env", "/a/x.env", False),
    ("ext-any-depth", "*.pem", "/etc/ssl/server.pem", True),
    ("ext-dotfile", "*.pem", "/a/.pem", True),
    ("ext-not-middle", "*.pem", "/a/x.pem.bak", False),
    ("ext-directory-beneath", "*.d", "/etc/conf.d/x", True),
    ("multi-ext", "*.tar.gz", "/a/x.tar.gz", True),
    ("relative-two-segments", "foo/bar", "/x/foo/bar/baz", True),
    ("relative-two-segments-order", "foo/bar", "/x/bar/foo", False),
    ("relative-star-needs-a-parent", "*/.env", "/.env", False),
    ("relative-star-slash-dot", "*/.*", "/.profile", False),
    ("relative-star-slash-dot-nested", "*/.*", "/home/.profile", True),
    ("dot-star-any-depth", ".*", "/home/u/.bashrc", True),
    ("dot-star-not-plain", ".*", "/home/u/bashrc", False),
    ("prefix-any-depth", "id_rsa*", "/home/u/.ssh/id_rsa.pub", True),
    ("prefix-whole-name", "id_rsa*", "/home/u/.ssh/id_rsa", True),
    ("prefix-not-middle", "rsa*", "/home/u/.ssh/id_rsa", False),
    ("prefix-directory-beneath", "cache-*", "/var/cache-1/x", True),
    ("relative-wild-first", "*.d/conf", "/etc/x.d/conf", True),
    ("relative-wild-first-miss", "*.d/conf", "/etc/x.d/other", False),
    ("relative-offset-literal", "?/b/c", "/x/a/b/c", True),
    ("relative-offset-literal-too-short", "?/b/c", "/b/c", False),
    ("relative-with-globstar", "src/**/*.py", "/p/src/a/b/m.py", True),
    ("relative-star-globstar", "*/**/x", "/x", False),
    ("relative-star-globstar-deep", "*/**/x", "/a/b/x", True),
    ("relative-star", "*", "/a", True),
    ("relative-star-not-root", "*", "/", False),
    ("relative-two-stars-depth", "*/*", "/a", False),
    ("relative-two-stars-depth-ok", "*/*", "/a/b", True),
    # classes
    ("class", "/a/[xy]", "/a/y", True),
    ("class-miss", "/a/[xy]", "/a/z", False),
    ("class-range", "/a/[0-9]", "/a/5", True),
    ("class-bang", "/a/[!xy]", "/a/z", True),
    ("class-bang-miss", "/a/[!xy]", "/a/x", False),
    ("class-caret", "/a/[^xy]", "/a/z", True),
    ("class-negated-never-slash", "/a[!x]b", "/a/b", False),
    ("class-never-slash", "/a[/]b", "/a/b", False),
    ("class-range-over-slash", "/a[!-0]b", "/a/b", False),
    ("class-bracket-first", "/a/[]]", "/a/]", True),
    ("class-escaped", "/a/[\\]x]", "/a/]", True),
    ("class-posix-digit", "/a/[[:digit:]]", "/a/7", True),
    ("class-posix-digit-miss", "/a/[[:digit:]]", "/a/x", False),
    ("class-posix-punct-not-slash", "/a[[:punct:]]b", "/a/b", False),
    ("class-posix-punct", "/a[[:punct:]]b", "/a.b", True),
    ("class-dash-last", "/a/[x-]", "/a/-", True),
    # escapes: `\c` is a literal c (variables are expanded escaped)
    ("escaped-star", "/a/\\*", "/a/*", True),
    ("escaped-star-is-literal", "/a/\\*", "/a/b", False),
    ("escaped-project-dir", "/pro\\*j/**", "/pro*j/x", True),
    ("escaped-project-dir-not-widened", "/pro\\*j/**", "/proXj/x", False),
    ("escaped-question", "/a\\?", "/ab", False),
    ("escaped-bracket", "/\\[a]", "/[a]", True),
    ("escaped-backslash", "/a\\\\b", "/a\\b", True),
    ("escaped-plain-char", "/\\a", "/a", True),
    # spelling: trailing slash dropped, `//` and `.` folded, case-sensitive
    ("trailing-slash-dropped", "/a/b/", "/a/b", True),
    ("trailing-slash-beneath", "/a/b/", "/a/b/c", True),
    ("double-slash-folded", "/a//b", "/a/b", True),
    ("dot-folded", "/a/./b", "/a/b", True),
    ("dotdot-after-literal", "/a/x/../b", "/a/b", True),
    ("dotdot-at-root", "/../a", "/a", True),
    ("case-sensitive", "/A", "/a", False),
    ("case-sensitive-name", ".ENV", "/p/.env", False),
    ("root-pattern-is-everything", "/", "/etc/passwd", True),
    ("non-ascii", "*/проект/*", "/home/проект/x", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), [c[1:] for c in GLOBS],
                         ids=[c[0] for c in GLOBS])
def test_glob_semantics(pattern: str, path: str, expected: bool) -> None:
    """Each glob rule holds for the single glob and for the index alike."""
    assert compile_path_glob(pattern).match(path) is expected
    assert PathIndex([(pattern, 3)]).match(path) == ([3] if expected else [])


BAD_PATTERNS = [
    ("empty", "", "empty path pattern"),
    ("unterminated-class", "/a/[bc", "unterminated [ in path pattern at offset 3"),
    ("unterminated-negated", "/a/[!]", "unterminated ["),
    ("lone-backslash", "/a\\", "path pattern ends with a lone backslash"),
    ("lone-backslash-in-class", "/[a\\", "path pattern ends with a lone backslash"),
    ("reversed-range", "/[z-a]", "bad range z-a"),
    ("unknown-posix-class", "/[[:nope:]]", "unknown character class [:nope:]"),
    ("dotdot-after-wild", "/a/*/../b", "'..' in a path pattern must follow a literal"),
    ("relative-dotdot", "../b", "'..' in a path pattern must follow a literal"),
    ("relative-dot-only", "./", "names no path"),
    ("relative-folds-to-nothing", "a/..", "names no path"),
    ("nul", "/a\x00", "path pattern contains a NUL byte"),
    ("surrogate", "/a\udcff", "path pattern contains undecodable bytes"),
    ("huge", "/" + "a" * 20000, "path pattern longer than"),
    ("not-a-string", None, "path pattern is not a string"),
]


@pytest.mark.parametrize(("pattern", "reason"), [c[1:] for c in BAD_PATTERNS],
                         ids=[c[0] for c in BAD_PATTERNS])
def test_bad_patterns_are_refused(pattern: str, reason: str) -> None:
    """A bad pattern raises ValueError with the reason, for the glob and the index."""
    with pytest.raises(ValueError, match=re.escape(reason)):
        compile_path_glob(pattern)
    with pytest.raises(ValueError, match=re.escape(reason)):
        PathIndex([("/ok/**", 0), (pattern, 1)])


@pytest.mark.parametrize(("pattern", "expected"), [
    pytest.param("**", True, id="globstar"),
    pytest.param("/**", True, id="slash-globstar"),
    pytest.param("/**/", True, id="trailing-slash-dropped"),
    pytest.param("*", False, id="star-misses-root"),
    pytest.param("/*", False, id="slash-star"),
    pytest.param("/", False, id="root"),
    pytest.param("\\*\\*", False, id="escaped-stars"),
    pytest.param("/a/**", False, id="directory"),
    pytest.param("**/*", False, id="globstar-star"),
])
def test_is_catch_all_path(pattern: str, expected: bool) -> None:
    """Only `**` and `/**` are catch-alls; anything narrower competes as a rule."""
    assert is_catch_all_path(pattern) is expected


# --- the index --------------------------------------------------------------------

AUTOGEN_FILE_READ = [
    ("/project/workspace/**", 0), ("/project/data/**", 1), ("*/.env", 2), ("*/.*", 3),
]


@pytest.mark.parametrize(("path", "keys"), [
    pytest.param("/project/workspace/analyze.py", [0], id="workspace-file"),
    pytest.param("/project/workspace/.env", [0, 2, 3], id="workspace-dotenv"),
    pytest.param("/home/user/.ssh/id_rsa", [3], id="ssh-key"),
    pytest.param("/etc/passwd", [], id="passwd"),
    pytest.param("/project/data/x.csv", [1], id="data"),
    pytest.param("/project", [], id="project-itself"),
])
def test_index_on_the_example_policy(path: str, keys: list[int]) -> None:
    """The example policy's file_read selectors give every matching key."""
    assert PathIndex(AUTOGEN_FILE_READ).match(path) == keys


def test_index_keys_are_sorted_and_unique() -> None:
    """Several patterns of one key give it once; keys come sorted."""
    index = PathIndex([("*.pem", 9), ("/k/**", 2), ("/k/*.pem", 9), ("k", 5)])
    assert index.match("/k/a.pem") == [2, 5, 9]


def test_index_refuses_relative_paths() -> None:
    """A relative path is not judged: it raises BadPath rather than matching nothing."""
    with pytest.raises(BadPath, match="path is not absolute"):
        PathIndex([(".env", 0)]).match(".env")


def test_empty_index_matches_nothing() -> None:
    """No patterns: no keys, for any path."""
    assert PathIndex([]).match("/a") == []
    assert PathIndex([]).match("/") == []


def test_index_with_many_patterns_per_bucket() -> None:
    """Buckets larger than one regex node still find every matching key."""
    patterns = [(f"/data/*/f{i}.csv", i) for i in range(300)]
    patterns += [(f"x{i}-*y", 1000 + i) for i in range(300)]
    patterns += [(f"*-{i}/z", 2000 + i) for i in range(300)]
    index = PathIndex(patterns)
    assert index.match("/data/q/f123.csv") == [123]
    assert index.match("/a/x17-abcy") == [1017]
    assert index.match("/a/b-17/z") == [2017]
    assert index.match("/a/b-7/z/x17-y") == [1017, 2007]
    assert index.match("/data/q/none") == []


def test_long_paths_with_many_globstars_stay_fast() -> None:
    """Repeated `**` against a long path does not backtrack without bound."""
    patterns = [("/**/a/**/a/**/a/**/a/**/b", 0), ("a/**/a/**/a/**/c/**/b", 1),
                ("*/*/*/*/a/**/a/**/b", 2)]
    index = PathIndex(patterns)
    path = "/a" * 2000
    began = time.perf_counter()
    assert index.match(path) == []
    assert index.match(path + "/b") == [0, 2]
    assert time.perf_counter() - began < 1.0


# --- agreement with a reference matcher -----------------------------------------------


def _reference(pattern_segments: list[str], anchored: bool, path: str) -> bool:
    """Gitignore-like matching, segment by segment, with fnmatch for each segment."""
    names = tuple(n for n in path.split("/") if n)
    segs = tuple(s for s in pattern_segments if s)

    @functools.cache
    def whole(si: int, ci: int, end: int) -> bool:
        if si == len(segs):
            return ci == end
        if segs[si] == "**":
            return any(whole(si + 1, k, end) for k in range(ci, end + 1))
        return ci < end and fnmatchcase(names[ci], segs[si]) and whole(si + 1, ci + 1, end)

    starts = [0] if anchored else range(len(names) + 1)
    return any(whole(0, i, end) for i in starts for end in range(i, len(names) + 1))


# tokens as (our syntax, fnmatch syntax)
_TOKENS = st.sampled_from([
    ("a", "a"), ("b", "b"), (".", "."), ("*", "*"), ("?", "?"), ("[ab]", "[ab]"),
    ("[!a]", "[!a]"), ("\\*", "[*]"), ("[a-c]", "[a-c]"),
])
_SEGMENT = st.one_of(
    st.just(("**", "**")),
    st.lists(_TOKENS, min_size=1, max_size=3).map(
        lambda ts: ("".join(t[0] for t in ts), "".join(t[1] for t in ts))),
).filter(lambda s: s[0] not in (".", ".."))
_PATTERN = st.tuples(st.booleans(), st.lists(_SEGMENT, min_size=1, max_size=4),
                     st.booleans())
_NAME = st.sampled_from(["a", "b", "ab", ".a", "a.b", "c", "*", "ba", ".", "bb"]).filter(
    lambda n: n != ".")
_TARGET = st.lists(_NAME, max_size=6).map(lambda ns: "/" + "/".join(ns))


def _render(spec: tuple[bool, list[tuple[str, str]], bool]) -> tuple[str, list[str], bool]:
    anchored, segs, trailing = spec
    text = ("/" if anchored else "") + "/".join(s[0] for s in segs) + ("/" if trailing else "")
    return text, [s[1] for s in segs], anchored


@settings(max_examples=400, deadline=None)
@given(st.lists(_PATTERN, min_size=1, max_size=12), st.lists(_TARGET, min_size=1, max_size=5))
def test_index_agrees_with_reference(specs: list, paths: list[str]) -> None:
    """PathIndex and each PathGlob give exactly the reference matcher's answers."""
    rendered = [_render(s) for s in specs]
    index = PathIndex([(text, key) for key, (text, _, _) in enumerate(rendered)])
    for path in paths:
        expected = [key for key, (_, segs, anchored) in enumerate(rendered)
                    if _reference(segs, anchored, path)]
        assert index.match(path) == expected, (rendered, path)
        for key, (text, _, _) in enumerate(rendered):
            assert compile_path_glob(text).match(path) is (key in expected), (text, path)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_any_pattern_compiles_or_raises_value_error(pattern: str) -> None:
    """Arbitrary text compiles or raises ValueError; nothing else escapes."""
    try:
        glob = compile_path_glob(pattern)
    except ValueError:
        return
    assume(glob is not None)
    assert glob.match("/a/b") in (True, False)
    assert glob.match("/") in (True, False)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.text(max_size=10))
def test_any_path_normalises_or_raises_bad_path(path: str, cwd: str) -> None:
    """Arbitrary text normalises or raises BadPath; nothing else escapes."""
    try:
        result = normalise_path(path, cwd)
    except BadPath:
        return
    assert result.startswith("/")
    assert "//" not in result
