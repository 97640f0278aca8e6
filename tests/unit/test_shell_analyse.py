"""Command analysis: parts, words, wrappers, traps and cannot-analyse cases."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.shell.analyse import MAX_INPUT, analyse
from gateway.shell.braces import brace_expand
from gateway.shell.expand import to_word
from gateway.shell.shells import other_shell
from gateway.shell.tokens import active
from gateway.shell.words import Analysis, Glob, Hole, Word
from gateway.shell.wrappers import TOOLS, Kind

HOME = "/home/u"
CWD = "/w"


def run(line: str, **kw: object) -> Analysis:
    return analyse(line, home=HOME, cwd=CWD, **kw)  # type: ignore[arg-type]


def lines_of(a: Analysis) -> list[str]:
    """Each part as its quote-removed words joined by spaces."""
    assert a.cannot_analyse is None, a.cannot_analyse
    return [" ".join(w.display() for w in p.words) for p in a.parts]


# --- parts of ordinary lines ---------------------------------------------------------

@pytest.mark.parametrize(("line", "parts"), [
    pytest.param("python workspace/analyze.py", ["python workspace/analyze.py"], id="simple"),
    pytest.param("cd w && python x.py", ["cd w", "python x.py"], id="and-list-builtin"),
    pytest.param("a | b || c; d & e", ["a", "b", "c", "d", "e"], id="pipes-and-lists"),
    pytest.param("(a; { b; })", ["a", "b"], id="subshell-and-group"),
    pytest.param("echo $(rm x) `ls`", ["rm x", "ls", "echo $(rm x) `ls`"], id="substitutions"),
    pytest.param("diff <(a) >(b)", ["a", "b", "diff <(a) >(b)"], id="process-substitution"),
    pytest.param("if a; then b; elif c; then d; else e; fi", list("abcde"), id="if"),
    pytest.param("while a; do b; done; until c; do d; done", list("abcd"), id="loops"),
    pytest.param("for i in $(a); do b; done", ["a", "b"], id="for-in"),
    pytest.param("for ((i=$(a); i<3; i++)); do b; done", ["a", "b"], id="c-style-for"),
    pytest.param("case $(a) in $(b)) c;; *) d;; esac", list("abcd"), id="case-arms"),
    pytest.param("f() { rm -rf /; }", ["rm -rf /"], id="function-body"),
    pytest.param("[[ -f $(a) && $(b) == x ]]", ["a", "b"], id="double-bracket-walked"),
    pytest.param("(( x = $(a) ))", ["a"], id="arithmetic-walked"),
    pytest.param("echo $(( $(a) + 1 ))", ["a", "echo $(( $(a) + 1 ))"], id="arith-expansion"),
    pytest.param("A=1", [], id="bare-assignment-no-part"),
    pytest.param("A=$(a) B=`b`", ["a", "b"], id="assignment-substitutions"),
    pytest.param("export A=1", ["export A=1"], id="export-is-a-part"),
    pytest.param("A=1 cmd x", ["cmd x"], id="prefix-assignment-dropped"),
    pytest.param("echo ${x:-$(rm x)}", ["rm x", "echo ${x:-$(rm x)}"], id="default-value"),
    pytest.param("echo \"a ${x:-`b`} $(c)\"", ["b", "c", "echo a ${x:-`b`} $(c)"],
                 id="inside-double-quotes"),
    pytest.param("cat <<EOF\n$(a) `b` ${x:-$(c)}\nEOF\n", ["a", "b", "c", "cat"],
                 id="expanding-heredoc"),
    pytest.param("cat <<'EOF'\n$(a)\nEOF\n", ["cat"], id="quoted-heredoc-inert"),
    pytest.param("echo > $(a) 2>>`b`", ["a", "b", "echo"], id="redirect-targets"),
    pytest.param("[ -f x ] && test -d y", ["[ -f x ]", "test -d y"], id="test-builtins"),
    pytest.param("'rm' -rf d", ["rm -rf d"], id="quote-removal"),
    pytest.param("# only a comment", [], id="comment"),
    pytest.param("x=(a $(rm y))", ["rm y"], id="array-assignment"),
    pytest.param("echo ${arr[$(rm x)]}", ["rm x", "echo ${arr[$(rm x)]}"], id="subscript"),
    pytest.param("cmd <<< $(rm z)", ["rm z", "cmd"], id="herestring-walked"),
    pytest.param("[ \"$a\" = b ]", ['[ $a = b ]'], id="single-bracket-is-a-part"),
])
def test_parts(line: str, parts: list[str]) -> None:
    """Every simple command that would run is a part, in its quote-removed form."""
    assert sorted(lines_of(run(line))) == sorted(parts)


def test_part_text_is_the_source_slice() -> None:
    """Part.text is the part as written, for the deny message."""
    a = run("cd 'w' && \\rm  -rf   /tmp/x")
    assert [p.text for p in a.parts] == ["cd 'w'", "\\rm  -rf   /tmp/x"]
    assert a.parts[1].program == "rm"


# --- words ---------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "words"), [
    pytest.param("rm -rf /tmp/{x,../home/user}", ["rm", "-rf", "/tmp/x", "/tmp/../home/user"],
                 id="brace-list"),
    pytest.param("echo {1..3} {a..c} {01..03}", ["echo", "1", "2", "3", "a", "b", "c", "01",
                                                 "02", "03"], id="brace-sequences"),
    pytest.param("echo '{a,b}' {a} {}", ["echo", "{a,b}", "{a}", "{}"], id="not-braces"),
    pytest.param("echo ~ ~/x a=~/y:~/z --p=~/q", ["echo", HOME, HOME + "/x",
                                                  f"a={HOME}/y:{HOME}/z", "--p=~/q"],
                 id="tilde"),
    pytest.param("echo ~+/x '~'", ["echo", CWD + "/x", "~"], id="tilde-cwd-and-quoted"),
    pytest.param("echo $'a\\tb' $\"c\" a\\ b", ["echo", "a\tb", "c", "a b"], id="quoting"),
])
def test_literal_words(line: str, words: list[str]) -> None:
    """Quote removal, brace and tilde expansion as bash does them."""
    (part,) = run(line).parts
    assert [w.literal for w in part.words] == words


@pytest.mark.parametrize(("line", "index", "word"), [
    pytest.param("rm *.py", 1, Word((Glob("*"), ".py")), id="glob-star"),
    pytest.param("rm a?[bc]", 1, Word(("a", Glob("?"), Glob("[bc]"))), id="glob-bracket"),
    pytest.param("rm '*'", 1, Word(("*",)), id="quoted-glob-is-literal"),
    pytest.param("rm $X", 1, Word((Hole("$X"),), may_split=True), id="unquoted-hole-splits"),
    pytest.param('rm "$X"', 1, Word((Hole("$X"),)), id="quoted-hole-one-word"),
    pytest.param('rm "$@"', 1, Word((Hole("$@"),), may_split=True), id="quoted-at-splits"),
    pytest.param("rm /tmp/$(id)", 1, Word(("/tmp/", Hole("$(id)")), may_split=True),
                 id="substitution-hole"),
    pytest.param("rm ~root/x", 1, Word((Hole("~root"), "/x")), id="tilde-user-hole"),
    pytest.param("rm a\\*", 1, Word(("a*",)), id="escaped-glob"),
])
def test_globs_and_holes(line: str, index: int, word: Word) -> None:
    """Unquoted glob characters are Glob tokens; run-time text is a Hole."""
    assert run(line).parts[-1].words[index] == word


# --- the parser's traps ----------------------------------------------------------------

@pytest.mark.parametrize(("line", "parts"), [
    pytest.param("rm -rf /tmp/x >/dev/null /home/user", ["rm -rf /tmp/x /home/user"],
                 id="words-after-redirection"),
    pytest.param("a || b 2>/dev/null c", ["a", "b c"], id="redirection-on-a-list"),
    pytest.param("r\\\nm -rf /", ["rm -rf /"], id="backslash-newline"),
    pytest.param("echo 'a\\\nb'", ["echo a\\\nb"], id="continuation-kept-in-single-quotes"),
    pytest.param("# c \\\nrm x", ["rm x"], id="continuation-not-in-comment"),
    pytest.param("echo `echo \\`rm x\\``", ["rm x", "echo `rm x`", "echo `echo \\`rm x\\``"],
                 id="nested-backquotes"),
    pytest.param("x=${y:-`rm z`}", ["rm z"], id="backquote-in-default"),
    pytest.param("cat <<-EOF\n\t$(rm x)\n\tEOF\n", ["rm x", "cat"], id="dash-heredoc-tab"),
    pytest.param("time { a; b; }", ["a", "b"], id="time-group"),
    pytest.param("time -p { a; }", ["a"], id="time-p-group"),
    pytest.param("! if a; then b; fi", ["a", "b"], id="negated-if"),
    pytest.param("coproc { a; }", ["a"], id="coproc-group"),
    pytest.param("1A=2 cmd", ["1A=2 cmd"], id="invalid-assignment-is-program"),
    pytest.param('$"rm" -rf /', ["rm -rf /"], id="translated-string-program"),
    pytest.param("cat <<EOF && rm x\nb\nEOF\n", ["cat", "rm x"], id="heredoc-hanging-list"),
])
def test_parser_traps(line: str, parts: list[str]) -> None:
    """Each place tree-sitter reads a line differently from bash is repaired."""
    assert lines_of(run(line)) == parts


def test_heredoc_hanging_pipe_to_shell() -> None:
    """`cat <<EOF | sh` hangs `| sh` under the here-document: sh reads a pipe."""
    a = run("cat <<EOF | sh\nrm x\nEOF\n")
    assert a.cannot_analyse is not None and "stdin" in a.cannot_analyse


# --- wrappers, runners and shells -----------------------------------------------------

# One line per table entry, and the inner parts it must produce (None: cannot analyse).
TOOL_EXAMPLES: dict[str, tuple[str, list[str] | None]] = {
    "bash": ("bash --norc -xc 'rm a; ls' zero", ["rm a", "ls"]),
    "rbash": ("rbash -c 'rm a'", ["rm a"]),
    "sh": ("sh -ec 'rm a'", ["rm a"]),
    "dash": ("dash -c -- 'rm a'", ["rm a"]),
    "zsh": ("zsh -o errexit -c 'rm a'", ["rm a"]),
    "ksh": ("ksh -c 'rm a'", ["rm a"]),
    "ash": ("ash -c 'rm a'", ["rm a"]),
    "mksh": ("mksh -c 'rm a'", ["rm a"]),
    "yash": ("yash -c 'rm a'", ["rm a"]),
    "posh": ("posh -c 'rm a'", ["rm a"]),
    "eval": ("eval 'rm a;' ls", ["rm a", "ls"]),
    "source": ("source /s.sh", ["rm s"]),
    ".": (". s.sh", ["rm s"]),
    "env": ("env -i -u HOME -C /tmp - A=1 B=2 rm a", ["rm a"]),
    "nice": ("nice -n 5 rm a", ["rm a"]),
    "nohup": ("nohup rm a", ["rm a"]),
    "timeout": ("timeout -s KILL --kill-after=2 5s rm a", ["rm a"]),
    "stdbuf": ("stdbuf -oL -e 0 rm a", ["rm a"]),
    "time": ("time -p rm a", ["rm a"]),
    "command": ("command -p rm a", ["rm a"]),
    "builtin": ("builtin cd /", ["cd /"]),
    "exec": ("exec -a name rm a", ["rm a"]),
    "coproc": ("coproc rm a", ["rm a"]),
    "ionice": ("ionice -c 2 -n 7 rm a", ["rm a"]),
    "chrt": ("chrt --fifo 10 rm a", ["rm a"]),
    "taskset": ("taskset -c 0-3 rm a", ["rm a"]),
    "setsid": ("setsid -fw rm a", ["rm a"]),
    "sudo": ("sudo -u root -g wheel -E rm a", ["rm a"]),
    "doas": ("doas -u root rm a", ["rm a"]),
    "su": ("su -l root -c 'rm a'", ["rm a"]),
    "runuser": ("runuser -u bob -- rm -l a", ["rm -l a"]),
    "chroot": ("chroot --userspec=a:b /srv rm a", ["rm a"]),
    "nsenter": ("nsenter -t 1 -m -u --net=/x rm a", ["rm a"]),
    "unshare": ("unshare -r --fork --propagation private rm a", ["rm a"]),
    "flock": ("flock -w 5 /tmp/l -c 'rm a'", ["rm a"]),
    "xargs": ("xargs -0 -n 1 -P 4 rm -f", ["rm -f"]),
    "parallel": ("parallel -j 4 rm {} ::: a b", ["rm ${PARALLEL_ARG}"]),
    "watch": ("watch -n 1 'rm a; ls'", ["rm a", "ls"]),
    "script": ("script -q -c 'rm a' out.log", ["rm a"]),
    "find": ("find . -name x -exec rm {} \\;", ["rm {}"]),
    "busybox": ("busybox rm a", ["rm a"]),
    "trap": ("trap 'rm a' EXIT", ["rm a"]),
    "mapfile": ("mapfile -t -C 'rm' -c 1 arr", ["rm"]),
    "readarray": ("readarray -C 'rm' arr", ["rm"]),
    **{name: (f"{name} -c 'x'", None) for name, t in TOOLS.items()
       if t.handler is other_shell},
}


def test_every_table_entry_has_an_example() -> None:
    """The table and the examples list the same tools, so every entry is walked."""
    assert set(TOOL_EXAMPLES) == set(TOOLS)


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_every_table_entry(name: str) -> None:
    """Each wrapper, runner and shell: its own part, then what it runs."""
    line, inner = TOOL_EXAMPLES[name]
    scripts = {"/s.sh": "rm s", f"{CWD}/s.sh": "rm s"}
    a = run(line, read_script=scripts.get)
    if inner is None:
        assert a.cannot_analyse is not None and "not analysed" in a.cannot_analyse
        return
    parts = lines_of(a)
    assert parts[1:] == inner or parts[-len(inner):] == inner, parts
    own = a.parts[0]
    assert own.program == name.rsplit("/", 1)[-1]
    assert own.see_through is (TOOLS[name].kind is not Kind.RUNNER)


@pytest.mark.parametrize(("line", "see", "inner", "runtime"), [
    pytest.param("env", False, [], False, id="env-alone-is-itself"),
    pytest.param("command -v x", False, [], False, id="command-v-is-itself"),
    pytest.param("timeout 5", False, [], False, id="timeout-without-command"),
    pytest.param("/usr/bin/env rm a", True, ["rm a"], False, id="system-path-seen-through"),
    pytest.param("./env rm a", False, ["rm a"], False, id="other-path-is-a-part"),
    pytest.param("xargs rm -rf", False, ["rm -rf"], True, id="xargs-runtime"),
    pytest.param("xargs", False, ["echo"], True, id="xargs-default-echo"),
    pytest.param("find . -exec rm {} +", False, ["rm"], True, id="find-plus-runtime"),
    pytest.param("xargs -I{} mv {} /x", False, ["mv {} /x"], False, id="xargs-I-no-runtime"),
    pytest.param("sudo -s rm a", False, ["rm a"], False, id="sudo-s-with-command"),
    pytest.param("env -S'rm -f' a", True, ["rm -f a"], False, id="env-split-string"),
    pytest.param("sudo timeout 5 nice rm a", False, ["timeout 5 nice rm a", "nice rm a",
                                                     "rm a"], False, id="nested-wrappers"),
    pytest.param("watch -x rm a", False, ["rm a"], False, id="watch-exec"),
    pytest.param("bash x.sh", False, [], False, id="script-not-read-without-fs"),
])
def test_wrapper_details(line: str, see: bool, inner: list[str], runtime: bool) -> None:
    """See-through needs something judged; runtime_args marks the innermost command."""
    a = run(line)
    parts = lines_of(a)
    assert a.parts[0].see_through is see
    assert parts[1:] == inner
    if inner:
        assert a.parts[-1].runtime_args is runtime


def test_find_placeholder_is_a_hole() -> None:
    """`{}` of find -exec ... ; is a hole standing for one path."""
    inner = run("find /home -exec rm -rf {} \\;").parts[-1]
    assert inner.words[-1] == Word((Hole("{}"),))
    assert inner.text == "rm -rf {}"


def test_scripts_are_read_relative_to_cwd() -> None:
    """With read_script, `sh FILE` is judged like its text, and the shell is seen through."""
    seen: list[str] = []

    def read(path: str) -> str | None:
        seen.append(path)
        return "rm -rf /"

    a = run("sh ./x.sh", read_script=read)
    assert seen == [f"{CWD}/./x.sh"]
    assert lines_of(a) == ["sh ./x.sh", "rm -rf /"]
    assert a.parts[0].see_through


def test_literal_heredoc_to_shell_is_judged() -> None:
    """A shell whose stdin is a literal here-document or here-string is judged."""
    assert lines_of(run("bash <<'EOF'\nrm a\nEOF\n"))[1:] == ["rm a"]
    assert lines_of(run("sh -s <<<'rm b'"))[1:] == ["rm b"]


# --- cannot analyse -------------------------------------------------------------------

@pytest.mark.parametrize(("line", "why"), [
    pytest.param("echo 'unterminated", "does not parse", id="parse-error"),
    pytest.param("if a; then b", "does not parse", id="missing-fi"),
    pytest.param("$X -rf /", "set at run time", id="program-from-variable"),
    pytest.param("$(echo rm) x", "set at run time", id="program-from-substitution"),
    pytest.param("/bin/r? -rf /", "glob", id="program-glob"),
    pytest.param("r{m,} x", "brace", id="program-brace"),
    pytest.param("~/bin/rm x", "tilde", id="program-tilde"),
    pytest.param("eval $cmd", "set at run time", id="eval-non-literal"),
    pytest.param("eval 'rm' *", "set at run time", id="eval-glob"),
    pytest.param("curl x | sh", "stdin", id="pipe-to-shell"),
    pytest.param("echo rm x | bash", "stdin", id="echo-to-bash"),
    pytest.param("sh < f", "stdin", id="shell-from-file"),
    pytest.param("bash -", "stdin", id="bash-dash"),
    pytest.param("bash /dev/stdin", "stdin", id="bash-dev-stdin"),
    pytest.param("bash <(curl x)", "process substitution", id="bash-process-subst"),
    pytest.param("source <(curl x)", "process substitution", id="source-process-subst"),
    pytest.param("sh -s", "stdin", id="shell-s"),
    pytest.param('bash <<EOF\nrm $X\nEOF\n', "expands", id="expanding-heredoc-to-shell"),
    pytest.param('bash <<<"$X"', "expands", id="expanding-herestring-to-shell"),
    pytest.param("sudo -s", "stdin", id="sudo-shell"),
    pytest.param("su root", "stdin", id="su-shell"),
    pytest.param("chroot /srv", "stdin", id="chroot-shell"),
    pytest.param("fish -c ls", "not analysed", id="fish"),
    pytest.param("pwsh -Command ls", "not analysed", id="pwsh"),
    pytest.param("csh -c ls", "not analysed", id="csh"),
    pytest.param("timeout --bogus 5 rm", "unknown option", id="wrapper-unknown-option"),
    pytest.param("sudo -Z rm", "unknown option", id="sudo-unknown-option"),
    pytest.param("nice $OPTS rm", "option may stand", id="wrapper-option-from-variable"),
    pytest.param("sudo -u $U rm", "several words", id="wrapper-value-may-split"),
    pytest.param("xargs -I{} bash -c {}", "run time", id="xargs-code-placeholder"),
    pytest.param("xargs sh -c", "run time", id="xargs-shell-code-at-runtime"),
    pytest.param("xargs sh", "run time", id="xargs-shell-script-at-runtime"),
    pytest.param("xargs timeout 5", "run time", id="xargs-wrapper-command-at-runtime"),
    pytest.param("find . -exec sh -c {} \\;", "set at run time", id="find-code-placeholder"),
    pytest.param("find . $X", "action may stand", id="find-expression-from-variable"),
    pytest.param("parallel ::: ls rm", "inputs", id="parallel-commands-from-inputs"),
    pytest.param("LD_PRELOAD=/x.so ls", "LD_PRELOAD", id="ld-prefix-assignment"),
    pytest.param("BASH_ENV=x", "BASH_ENV", id="standalone-assignment"),
    pytest.param("env ENV=x sh", "ENV", id="env-operand"),
    pytest.param("sudo SHELLOPTS=xtrace ls", "SHELLOPTS", id="sudo-operand"),
    pytest.param("export PS4='$(rm -rf ~)'", "PS4", id="export"),
    pytest.param("declare -x BASHOPTS=x", "BASHOPTS", id="declare"),
    pytest.param("local PROMPT_COMMAND=x", "PROMPT_COMMAND", id="local"),
    pytest.param("readonly BASH_FUNC_x=1", "BASH_FUNC_x", id="readonly-bash-func"),
    pytest.param("env 'BASH_FUNC_ls%%=() { rm; }' bash -c ls", "BASH_FUNC_ls%%",
                 id="env-bash-func"),
    pytest.param("declare -n r=PS4", "PS4", id="nameref"),
    pytest.param("declare -n r", "set later", id="nameref-without-target"),
    pytest.param("sh <<'EOF'\n\\rm x\nEOF\n", "misread", id="heredoc-body-misread"),
    pytest.param("typeset PS4[0]=x", "PS4", id="subscript"),
    pytest.param("read PS4", "PS4", id="read"),
    pytest.param("printf -v PS4 x", "PS4", id="printf-v"),
    pytest.param("mapfile LD_X", "LD_X", id="mapfile"),
    pytest.param("getopts ab PS4", "PS4", id="getopts"),
    pytest.param("for PS4 in a; do :; done", "PS4", id="for-name"),
    pytest.param("select PS4 in a; do :; done", "PS4", id="select-name"),
    pytest.param(": ${PS4:=x}", "PS4", id="default-assignment"),
    pytest.param("let PS4=1", "PS4", id="let"),
    pytest.param("(( PS4 = 1 ))", "PS4", id="arithmetic-command"),
    pytest.param("echo $(( LD_X = 1 ))", "LD_X", id="arithmetic-expansion"),
    pytest.param("echo $[ PS4 = 1 ]", "PS4", id="old-arithmetic"),
    pytest.param("for (( PS4=0; ; )); do :; done", "PS4", id="c-for"),
    pytest.param("echo ${x@P}", "prompt", id="prompt-expansion"),
    pytest.param("export $N=1", "set at run time", id="export-name-from-variable"),
    pytest.param("sh -c \"$X\"", "set at run time", id="shell-code-from-variable"),
    pytest.param("echo " + "$(echo " * 500 + "x" + ")" * 500, "nested", id="deep-nesting"),
    pytest.param('sh -c "$(cat f)"', "set at run time", id="shell-code-from-substitution"),
    pytest.param("echo {1..100000}", "too many", id="brace-bomb"),
    pytest.param("", "empty", id="empty"),
    pytest.param("a\0b", "NUL", id="nul-byte"),
    pytest.param("echo \udcff", "UTF-8", id="surrogate"),
    pytest.param("x" * (MAX_INPUT + 1), "longer", id="too-long"),
    pytest.param("sh x.sh", "cannot be read", id="script-unreadable"),
])
def test_cannot_analyse(line: str, why: str) -> None:
    """Each case the semantics refuse is cannot-analyse, with a reason that says why."""
    a = run(line, read_script=lambda _p: None)
    assert a.parts == ()
    assert a.cannot_analyse is not None
    assert a.cannot_analyse.startswith("cannot analyse: ")
    assert why in a.cannot_analyse, a.cannot_analyse


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_never_raises(text: str) -> None:
    """Any input gives an Analysis, never an exception nor an internal error."""
    a = run(text)
    assert isinstance(a, Analysis)
    assert a.cannot_analyse is None or "internal error" not in a.cannot_analyse
    if a.cannot_analyse is None:
        assert all(p.words and p.words[0].literal is not None for p in a.parts)


# --- brace expansion against bash -----------------------------------------------------

BASH = shutil.which("bash")


@pytest.mark.skipif(BASH is None, reason="needs bash")
@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="{},.ab1-", min_size=1, max_size=12))
def test_brace_expansion_matches_bash(word: str) -> None:
    """Brace expansion of unquoted literal words gives bash's words."""
    ours = ["".join(s for s in w.segments if isinstance(s, str))
            for w in (to_word(t, False) for t in brace_expand(active(word))) if w.segments]
    proc = subprocess.run([BASH, "--noprofile", "--norc", "-c", f"printf '%s\\n' : {word}"],
                          capture_output=True, text=True, timeout=5, check=False)
    theirs = proc.stdout.split("\n")[1:-1]
    assert ours == theirs
