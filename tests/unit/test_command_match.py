"""Command pattern matching: deny as text globs over the line, allow word by word."""

from __future__ import annotations

import itertools
import posixpath
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.matching.charsets import ALL
from gateway.matching.commands import (
    CommandIndex,
    allow_admits,
    deny_matches,
    fold_program,
    fold_word,
    is_catch_all_command,
)
from gateway.matching.globlang import Wild, glob_regex, pattern_node, split_pattern
from gateway.matching.nfa import compile_nfa, nfa_accepts
from gateway.shell.words import Glob, Hole, Part, Segment, Word


def w(*segments: Segment, split: bool = False) -> Word:
    """A word from segments; a plain string is a literal word."""
    return Word(tuple(segments), split)


def hole(name: str = "$X", split: bool = True) -> Word:
    return Word((Hole(name),), split)


def part(*words: str | Word, runtime_args: bool = False, see_through: bool = False) -> Part:
    ws = tuple(x if isinstance(x, Word) else Word.of(x) for x in words)
    return Part(ws, " ".join(x.display() for x in ws), see_through, runtime_args)


def denies(pattern: str, p: Part) -> bool:
    return bool(CommandIndex([(pattern, 0, True)]).denies(p))


def allows(pattern: str, p: Part) -> bool:
    return bool(CommandIndex([(pattern, 0, False)]).allows(p))


STAR_GLOB = Glob("*")

# --- deny ---------------------------------------------------------------------------

DENY_CASES = [
    pytest.param("rm -rf /home*", part("rm", "-rf", "/home/u"), True, id="literal-match"),
    pytest.param("rm -rf /home*", part("rm", "-rf", "/tmp/../home/u"), True, id="folded-dotdot"),
    pytest.param("rm -rf /home*", part("rm", "-rf", "//home"), True, id="folded-double-slash"),
    pytest.param("rm -rf /home*", part("rm", "-rf", "/tmp/x"), False, id="other-path"),
    pytest.param("rm -rf /home*", part("rm", "-rf", hole("$DIR")), True, id="unquoted-hole"),
    pytest.param("rm -rf /home*", part("rm", "-rf", hole("{}", split=False)), True,
                 id="find-exec-placeholder"),
    pytest.param("rm -rf /home*", part("rm", "-rf", runtime_args=True), True,
                 id="xargs-runtime-args"),
    pytest.param("rm -rf /home*", part("rm", "-rf", w("build/", STAR_GLOB)), False,
                 id="relative-glob-never-home"),
    pytest.param("rm -rf /home*", part("rm", "-rf", w("/tmp/", Hole("$X"))), True,
                 id="hole-climbs-with-dotdot"),
    pytest.param("rm -rf /home*", part("rm", "-rf", w("build/", Hole("$X"))), False,
                 id="quoted-relative-hole-stays-relative"),
    pytest.param("rm -rf /home*", part("rm", "-rf", w("/", STAR_GLOB)), True,
                 id="root-glob-expands-to-home"),
    pytest.param("rm -rf /", part("rm", "-rf", w("/tmp/.", STAR_GLOB)), True,
                 id="dot-star-yields-dotdot"),
    pytest.param("rm -rf /tmp", part("rm", "-rf", hole(), "/tmp"), True, id="hole-may-vanish"),
    pytest.param("rm -rf /tmp", part("rm", "-rf", hole(split=False), "/tmp"), False,
                 id="quoted-hole-stays-a-word"),
    pytest.param("cat /home/u/.ssh*", part("cat", w("/home/u/", STAR_GLOB)), False,
                 id="glob-skips-dotfiles"),
    pytest.param("cat /home/u/.ssh*", part("cat", w("/home/u/", Glob("?"), "ssh")), False,
                 id="question-skips-leading-dot"),
    pytest.param("cat /etc/passwd", part("cat", w("/etc/pass", Glob("[vw]"), "d")), True,
                 id="bracket-glob-can-match"),
    pytest.param("cat /etc/passwd", part("cat", w("/etc/pass", Glob("[xy]"), "d")), False,
                 id="bracket-glob-cannot-match"),
    pytest.param("rm a b", part("rm", w(STAR_GLOB)), True, id="glob-expands-to-several"),
    pytest.param("echo \\*", part("echo", w(STAR_GLOB)), True, id="glob-own-text-when-no-match"),
    pytest.param("echo \\*", part("echo", "x"), False, id="escaped-star-is-literal"),
    pytest.param("echo '*'", part("echo", "x"), False, id="quoted-star-is-literal"),
    pytest.param("echo 'a b'", part("echo", "a b"), True, id="quoted-blank"),
    pytest.param("echo   a", part("echo", "a"), True, id="blank-runs-are-one-separator"),
    pytest.param("cat /etc/shadow", part("cat", w("/var/www/", Hole("$F"))), True,
                 id="quoted-hole-climbs-to-etc"),
    pytest.param("ls -la", part("ls", runtime_args=True), True, id="runtime-args-any-words"),
    pytest.param("rm*", part("rmdir", "x"), True, id="prefix-glob-rmdir"),
    pytest.param("rm*", part("rm", "-rf", "/"), True, id="prefix-glob-rm"),
    pytest.param("rm*", part("grm", "x"), False, id="prefix-glob-anchored"),
    pytest.param("/bin/rm -rf *", part("/usr/bin/rm", "-rf", "x"), True,
                 id="program-basename-both-sides"),
    pytest.param("rm -rf *", part("/bin/rm", "-rf", "x"), True, id="program-path-basename"),
    pytest.param("*/.ssh/*", part("cat", "/home/u/.ssh/id_rsa"), True,
                 id="globbed-directory-stays-text"),
    pytest.param("dash*", part("dash", "-c", "ls", see_through=True), True,
                 id="seen-through-own-line"),
    pytest.param("python -c *", part("python", "x.py"), False, id="other-arguments"),
    pytest.param("* --force*", part("git", "push", "--force"), True, id="leading-wildcard"),
    pytest.param("pip install *", part("pip", w("ins", Hole("$T"), split=True), "x"), True,
                 id="hole-inside-word"),
    pytest.param("curl *evil.com*", part("curl", "--url=https://evil.com/../x"), True,
                 id="url-text"),
]


@pytest.mark.parametrize(("pattern", "p", "expected"), DENY_CASES)
def test_deny(pattern: str, p: Part, expected: bool) -> None:
    """A deny pattern matches when some run-time value of the line would match it."""
    assert denies(pattern, p) is expected


@pytest.mark.parametrize(("pattern", "p", "expected"), DENY_CASES)
def test_deny_general_path_agrees(pattern: str, p: Part, expected: bool) -> None:
    """The NFA path gives the same answer as the index for every table case."""
    assert deny_matches(pattern, p, general=True) is expected


# --- allow --------------------------------------------------------------------------

ALLOW_CASES = [
    pytest.param("rm -rf /tmp/*", part("rm", "-rf", "/tmp/x"), True, id="tmp-child"),
    pytest.param("rm -rf /tmp/*", part("rm", "-rf", "/tmp/x", "/home/user"), False,
                 id="extra-argument"),
    pytest.param("rm -rf /tmp/*", part("rm", "-rf", "/tmp/../home/user"), False,
                 id="dotdot-escape"),
    pytest.param("rm -rf /tmp/*", part("rm", "-rf", "/tmp/"), False, id="tmp-itself-folded"),
    pytest.param("rm -rf /tmp/*", part("rm", "-rf", w("/tmp/", STAR_GLOB)), True,
                 id="same-glob-text"),
    pytest.param("rm -rf /tmp/*", part("rm", "-rf", w("/", STAR_GLOB)), False,
                 id="other-glob-text"),
    pytest.param("rm -rf /tmp/*", part("rm", "-rf", w("/tmp/", Hole("$X"), split=True)),
                 False, id="hole-in-word"),
    pytest.param("rm -rf /tmp/*", part("rm", "-rf", hole()), False, id="hole-word"),
    pytest.param("rm -rf /tmp/*", part("rm", "-rf", "/tmp/x", runtime_args=True), False,
                 id="closed-pattern-runtime-args"),
    pytest.param("git push *", part("git", "push", "origin", "main"), True, id="trailing-star"),
    pytest.param("git push *", part("git", "push"), False, id="trailing-star-needs-one"),
    pytest.param("git push *", part("git", "push", hole(split=False)), True, id="quoted-hole"),
    pytest.param("git push *", part("git", "push", hole()), False, id="unquoted-hole-may-vanish"),
    pytest.param("git push *", part("git", "push", hole(), "origin"), True,
                 id="vanishing-hole-with-a-sure-word"),
    pytest.param("git push *", part("git", "push", runtime_args=True), False,
                 id="runtime-args-may-be-none"),
    pytest.param("git push *", part("git", "pull", "x"), False, id="fixed-word-differs"),
    pytest.param("python*", part("python3", "x.py", "--flag"), True, id="program-star"),
    pytest.param("python*", part("python"), True, id="program-star-bare"),
    pytest.param("python*", part("python", hole(), runtime_args=True), True,
                 id="program-star-anything"),
    pytest.param("python*", part("/usr/bin/python3", "x.py"), True, id="program-basename"),
    pytest.param("ls", part("ls"), True, id="exact"),
    pytest.param("ls", part("ls", runtime_args=True), False, id="xargs-ls-vs-exact"),
    pytest.param("ls", part("ls", "-l"), False, id="exact-extra-arg"),
    pytest.param("ls *", part("ls", runtime_args=True), False, id="star-needs-static-arg"),
    pytest.param("echo 'hello world'", part("echo", "hello world"), True, id="quoted-word"),
    pytest.param("echo 'hello world'", part("echo", "hello", "world"), False,
                 id="quoted-word-is-one"),
    pytest.param("echo \\*", part("echo", "*"), True, id="escaped-star-literal"),
    pytest.param("echo \\*", part("echo", "x"), False, id="escaped-star-not-wild"),
    pytest.param("echo \\*", part("echo", w(STAR_GLOB)), False, id="escaped-star-not-glob"),
    pytest.param("cat '*.txt'", part("cat", "a.txt"), False, id="quoted-glob-literal"),
    pytest.param("cat *.txt", part("cat", "a.txt"), True, id="word-glob"),
    pytest.param("cat *.txt", part("cat", "a b.txt"), True, id="word-glob-blank-in-arg"),
    pytest.param("cat *.txt", part("cat", "a.txt", "b.txt"), False, id="word-glob-one-arg"),
    pytest.param("cat *.txt", part("cat", w(STAR_GLOB, ".txt")), True, id="word-glob-same"),
    pytest.param("cat *.txt", part("cat", w(STAR_GLOB)), False, id="word-glob-wider-glob"),
    pytest.param("cat *", part("cat", w(STAR_GLOB)), True, id="lone-star-admits-glob"),
    pytest.param("git * main", part("git", "push", "main"), True, id="middle-star"),
    pytest.param("git * main", part("git", hole(split=False), "main"), True,
                 id="middle-star-quoted-hole"),
    pytest.param("git * main", part("git", hole(), "main"), False,
                 id="middle-star-unquoted-hole"),
    pytest.param("/usr/bin/python x.py", part("/usr/bin/python", "x.py"), True,
                 id="program-path-exact"),
    pytest.param("/usr/bin/python x.py", part("/usr/bin/../bin/python", "x.py"), True,
                 id="program-path-folded"),
    pytest.param("/usr/bin/python x.py", part("python", "x.py"), False,
                 id="program-path-not-path-lookup"),
    pytest.param("/usr/bin/python x.py", part("/tmp/python", "x.py"), False,
                 id="program-path-other-dir"),
    pytest.param("./run.sh *", part("./run.sh", "a"), True, id="program-dot-slash"),
    pytest.param("./run.sh *", part("run.sh", "a"), False, id="program-dot-slash-not-lookup"),
    pytest.param("python ./scripts/*", part("python", "./scripts/a.py"), True,
                 id="dot-slash-pattern"),
    pytest.param("python ./*", part("python", "/etc/passwd"), False, id="dot-slash-not-absolute"),
    pytest.param("python ./*", part("python", "../x.py"), False, id="dot-slash-not-parent"),
    pytest.param("rm -rf ./*", part("rm", "-rf", "./"), False, id="dot-slash-not-here-itself"),
    pytest.param("curl https://api.x.com/*", part("curl", "https://api.x.com/v1/a"), True,
                 id="url-keeps-scheme"),
    pytest.param("curl https://api.x.com/*", part("curl", "https://evil.com/x"), False,
                 id="url-other-host"),
    pytest.param("tool --out=/tmp/*", part("tool", "--out=/tmp/../etc/x"), False,
                 id="option-value-folded"),
    pytest.param("tool --out=/tmp/*", part("tool", "--out=/tmp/a"), True, id="option-value"),
    pytest.param("sh *", part("sh", "-c", "ls", see_through=True), True, id="seen-through-part"),
    pytest.param("*", part("anything", hole(), runtime_args=True), True, id="lone-star-pattern"),
]


@pytest.mark.parametrize(("pattern", "p", "expected"), ALLOW_CASES)
def test_allow(pattern: str, p: Part, expected: bool) -> None:
    """An allow pattern admits a part only when every run-time value is admitted."""
    assert allows(pattern, p) is expected


# --- patterns and index -------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "reason"), [
    pytest.param("", "empty", id="empty"),
    pytest.param("   \t", "empty", id="blank"),
    pytest.param("echo 'a", "unterminated ' quote", id="single-quote"),
    pytest.param('echo "a', 'unterminated " quote', id="double-quote"),
    pytest.param("echo a\\", "lone backslash", id="trailing-backslash"),
    pytest.param("echo \x00", "NUL", id="nul"),
    pytest.param("ls [[:nope:]]", "unknown character class", id="bad-class"),
    pytest.param("ls [[=a=]]", "not supported", id="equivalence-class"),
])
@pytest.mark.parametrize("is_deny", [True, False], ids=["deny", "allow"])
def test_bad_pattern(pattern: str, reason: str, is_deny: bool) -> None:
    """A bad pattern is a ValueError that names the pattern and the reason."""
    with pytest.raises(ValueError, match=re.escape(reason)) as e:
        CommandIndex([("ok", 1, True), (pattern, 2, is_deny)])
    assert repr(pattern) in str(e.value)


@pytest.mark.parametrize(("pattern", "expected"), [
    pytest.param("*", True, id="star"),
    pytest.param("**", False, id="double-star"),
    pytest.param(" *", False, id="blank-star"),
    pytest.param("* *", False, id="star-star-words"),
    pytest.param("\\*", False, id="escaped"),
])
def test_is_catch_all_command(pattern: str, expected: bool) -> None:
    """Only exactly `*` is the catch-all command selector."""
    assert is_catch_all_command(pattern) is expected


def test_index_returns_sorted_unique_keys() -> None:
    """Several selectors of one rule report its key once; keys come back ascending."""
    idx = CommandIndex([("rm *", 7, True), ("rm -rf *", 7, True), ("*rf*", 3, True),
                        ("python*", 2, False), ("python x", 1, False)])
    assert idx.denies(part("rm", "-rf", "/")) == [3, 7]
    assert idx.allows(part("python", "x")) == [1, 2]
    assert idx.denies(part("ls")) == []


def test_empty_index() -> None:
    """An empty index denies nothing and allows nothing."""
    idx = CommandIndex([])
    assert idx.denies(part("rm", "-rf", "/")) == []
    assert idx.allows(part("ls")) == []


def test_wordless_part_fails_closed() -> None:
    """A part without words is matched as an unknown program with unknown arguments."""
    p = Part((), "")
    assert CommandIndex([("*", 1, True)]).denies(p) == [1]
    assert CommandIndex([("* -rf /", 1, True)]).denies(p) == [1]
    assert CommandIndex([("rm *", 1, True)]).denies(p) == []
    assert CommandIndex([("ls", 1, False)]).allows(p) == []


@pytest.mark.parametrize(("word", "folded"), [
    pytest.param("-rf", "-rf", id="no-slash"),
    pytest.param("/tmp/../home/u", "/home/u", id="dotdot"),
    pytest.param("/../etc", "/etc", id="dotdot-at-root"),
    pytest.param("a/../../b", "../b", id="relative-climb"),
    pytest.param("./x", "x", id="leading-dot"),
    pytest.param("a/..", ".", id="to-here"),
    pytest.param("//etc//x/", "/etc/x", id="slashes"),
    pytest.param(".hidden/x", ".hidden/x", id="dot-name"),
    pytest.param("--out=/tmp/../etc", "--out=/etc", id="option-prefix"),
    pytest.param("--out=/../etc", "--out=/etc", id="option-prefix-root"),
    pytest.param("--out=./x", "--out=x", id="option-prefix-relative"),
    pytest.param("https://h/a/../b", "https://h/b", id="url"),
    pytest.param("https://h", "https://h", id="url-no-path"),
    pytest.param("x=https://h//a/./b/", "x=https://h/a/b", id="assignment-url"),
])
def test_fold_word(word: str, folded: str) -> None:
    """Path-like words fold `.`, `..` and `//`; prefixes and URL authorities stay."""
    assert fold_word(word) == folded


@pytest.mark.parametrize(("path", "folded"), [
    pytest.param("rm", "rm", id="bare"),
    pytest.param("./x", "./x", id="here"),
    pytest.param("a/../x", "./x", id="climb-to-here"),
    pytest.param("/usr/bin/../bin/rm", "/usr/bin/rm", id="absolute"),
])
def test_fold_program(path: str, folded: str) -> None:
    """A program path keeps a `/`, so it never turns into a PATH lookup."""
    assert fold_program(path) == folded


def test_many_stars_stay_linear() -> None:
    """A glob with many stars against a long hostile line answers quickly."""
    idx = CommandIndex([("*a*a*a*a*a*a*b", 1, True), ("x *a*a*a*a*b", 2, False)])
    long = part("x", "a" * 50_000)
    assert idx.denies(long) == []
    assert idx.allows(long) == []


# --- properties ---------------------------------------------------------------------

PATTERN_TOKENS = ["a", "b", "/", ".", "..", " ", "*", "?", "[ab]", "[!a]", "\\*", "'a b'", "-"]
WORD_CHARS = "ab/.-*"
patterns = st.lists(st.sampled_from(PATTERN_TOKENS), min_size=1, max_size=7).map("".join).filter(
    lambda s: s.strip() != "")
literal_words = st.text(alphabet=WORD_CHARS, min_size=0, max_size=6)
programs = st.sampled_from(["a", "ab", "b", "ba", "/x/a", "a.b"])


def _pattern_near(data: st.DataObject, text: str) -> str:
    """A pattern drawn around `text`: some characters kept, some made `?`, runs made `*`."""
    out = []
    for c in text:
        choice = data.draw(st.sampled_from(["keep"] * 8 + ["?", "*", "drop", "x"]))
        if choice == "keep":
            out.append("\\" + c)
        elif choice in "?*":
            out.append(choice)
        elif choice == "x":
            out.append("b")
    return "".join(out) or "*"


def _fold_line(p: Part) -> str:
    return " ".join([p.program, *(fold_word(x.literal or "") for x in p.words[1:])])


@settings(max_examples=500, deadline=None)
@given(st.data(), programs, st.lists(literal_words, max_size=4))
def test_fast_path_agrees_with_nfa(data: st.DataObject, program: str, args: list[str]) -> None:
    """On literal parts the regex fast path and the NFA product give the same answer."""
    p = part(program, *(Word.of(a) for a in args))
    near = data.draw(st.sampled_from([p.text, _fold_line(p)]))
    pattern = data.draw(st.one_of(patterns, st.just(_pattern_near(data, near))))
    assert deny_matches(pattern, p) == deny_matches(pattern, p, general=True)


def test_general_fold_agrees_with_text_fold() -> None:
    """Every short word over `a/.=`: the NFA path folds it as the text fold does."""
    for n in range(1, 6):
        for chars in itertools.product("a/.=", repeat=n):
            p = part("a", "".join(chars))
            pattern = "".join("\\" + c for c in _fold_line(p))
            assert deny_matches(pattern, p, general=True), pattern


def _naive_glob(items: tuple[object, ...], text: str) -> bool:
    """Reference matcher: plain recursion over the pattern."""
    if not items:
        return not text
    head, rest = items[0], items[1:]
    if isinstance(head, str):
        return text.startswith(head) and _naive_glob(rest, text[len(head):])
    assert isinstance(head, Wild)
    if head.is_star:
        return any(_naive_glob(rest, text[i:]) for i in range(len(text) + 1))
    chars = ALL if head.text == "?" else head.chars
    return bool(text) and any(lo <= ord(text[0]) <= hi for lo, hi in chars) and _naive_glob(
        rest, text[1:])


@settings(max_examples=400, deadline=None)
@given(patterns, st.text(alphabet="ab/. -", max_size=10))
def test_glob_regex_agrees_with_reference(pattern: str, text: str) -> None:
    """The atomic-group regex, the NFA and a naive recursive matcher agree on any text."""
    items = tuple(x for word in split_pattern(pattern) for x in (*word, " "))[:-1]
    expected = _naive_glob(items, text)
    assert (re.fullmatch(glob_regex(items), text, re.DOTALL) is not None) == expected
    assert nfa_accepts(compile_nfa(pattern_node(items)), text) == expected


abs_paths = st.lists(st.sampled_from(["a", "b", ".", "..", "", "c.d"]), min_size=1,
                     max_size=6).map(lambda cs: "/" + "/".join(cs))


@settings(max_examples=300, deadline=None)
@given(abs_paths)
def test_fold_word_agrees_with_normpath(path: str) -> None:
    """On plain absolute paths folding is posixpath.normpath, but `//` is one `/`."""
    expected = posixpath.normpath(path)
    if expected.startswith("//"):
        expected = expected[1:]
    assert fold_word(path) == expected


def _split(value: str) -> list[str]:
    return value.split()


template_segments = st.lists(
    st.sampled_from(["a", "/", "..", "b/", "/a", ".", Hole("$X"), Hole("$X")]),
    min_size=1, max_size=4)
values = st.lists(st.sampled_from(["a", "b", "/", "..", "/..", ".", " "]), max_size=5).map(
    "".join)


@settings(max_examples=500, deadline=None)
@given(st.data(), template_segments, st.booleans(), values, st.booleans())
def test_holes_over_approximate_every_value(data: st.DataObject, segs: list[Segment],
                                            split: bool, value: str, runtime: bool) -> None:
    """Deny: a value of the hole that makes the line match means the part is denied.
    Allow: a part admitted with a hole is admitted with every value of it."""
    word = Word(tuple(segs), split)
    text = "".join(value if isinstance(s, Hole) else s for s in segs)  # type: ignore[misc]
    concrete = _split(text) if split else [text]
    extra = ["b"] if runtime else []
    hole_part = part("a", word, runtime_args=runtime)
    value_part = part("a", *(Word.of(c) for c in concrete), *extra)
    near = data.draw(st.sampled_from([value_part.text, _fold_line(value_part)] * 3 + [""]))
    pattern = _pattern_near(data, near) if near else data.draw(patterns)
    if denies(pattern, value_part):
        assert denies(pattern, hole_part)
    allow = data.draw(st.one_of(patterns, st.sampled_from(["a *", "a* ", "a", "a \\*"])))
    if allows(allow, hole_part):
        assert allows(allow, value_part)


HOLE_TEMPLATE_TOKENS = ["a", "/", "..", "b/", "/a", ".", Hole("$X")]
HOLE_VALUES = ["..", "/..", "a/../..", "/", "", "a b"]


def _templates() -> list[tuple[Segment, ...]]:
    out = []
    for n in (1, 2, 3):
        out += [t for t in itertools.product(HOLE_TEMPLATE_TOKENS, repeat=n) if Hole("$X") in t]
    return out


@pytest.mark.parametrize("split", [False, True], ids=["quoted", "unquoted"])
def test_holes_over_approximate_small_space(split: bool) -> None:
    """Every small hole word and value: the line the value makes, as written or folded,
    used as a deny pattern, denies the part with the hole; allows never widen."""
    allow_patterns = ["a *", "a /*", "a /a", "a \\*", "a*"]
    for segs in _templates():
        hole_part = part("a", Word(segs, split))
        admitted = [p for p in allow_patterns if allows(p, hole_part)]
        for value in HOLE_VALUES:
            text = "".join(value if isinstance(s, Hole) else s for s in segs)  # type: ignore[misc]
            value_part = part("a", *(Word.of(c) for c in (_split(text) if split else [text])))
            for line in {value_part.text, _fold_line(value_part)}:
                pattern = "".join("\\" + c for c in line)
                assert denies(pattern, hole_part), (segs, value, pattern)
            for p in admitted:
                assert allows(p, value_part), (segs, value, p)


index_entries = st.lists(st.tuples(patterns, st.booleans()), max_size=12)
any_words = st.lists(st.one_of(
    literal_words.map(Word.of),
    st.just(w("a/", STAR_GLOB)),
    st.just(hole()),
    st.just(hole(split=False))), max_size=3)


@settings(max_examples=300, deadline=None)
@given(index_entries, programs, any_words, st.booleans())
def test_index_agrees_with_naive_loop(entries: list[tuple[str, bool]], program: str,
                                      args: list[Word], runtime: bool) -> None:
    """Buckets and pre-filters never change an answer: same keys as one pattern at a time."""
    p = part(program, *args, runtime_args=runtime)
    idx = CommandIndex([(pat, k, deny) for k, (pat, deny) in enumerate(entries)])
    naive_deny = [k for k, (pat, deny) in enumerate(entries)
                  if deny and deny_matches(pat, p, general=True)]
    naive_allow = [k for k, (pat, deny) in enumerate(entries)
                   if not deny and allow_admits(pat, p)]
    assert idx.denies(p) == naive_deny
    assert idx.allows(p) == naive_allow
