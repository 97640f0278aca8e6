"""The one table of wrappers, runners and shells, with the options that take a value.

Each entry says how the tool reads its arguments (after GNU coreutils, util-linux,
sudo, findutils and bash) and which handler finds what it then runs: another
command's words (`gateway.shell.runners`), or a string of shell code, a script file
or a script read from stdin (`gateway.shell.shells`). Where an option the table
does not know decides where the inner command starts, the command is
cannot-analyse: a guess there is how a wrapper hides what it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

from gateway.shell import runners, shells
from gateway.shell.options import Options
from gateway.shell.tool import Kind, Tool

OTHER_SHELLS = frozenset({"fish", "csh", "tcsh", "pwsh", "powershell", "nu", "xonsh",
                          "elvish", "rc", "es", "ion", "osh", "oil", "ysh", "nush"})


def _lf(*names: str) -> frozenset[str]:
    return frozenset(names)


_COREUTILS = _lf("help", "version")


def _table() -> dict[str, Tool]:
    t: dict[str, Tool] = {}

    def add(tool: Tool) -> None:
        t[tool.name] = tool

    for name, opts in shells.SHELL_OPTIONS.items():
        add(Tool(name, Kind.SHELL, opts, shells.shell, doc="-c STRING, FILE, or stdin"))
    for name in OTHER_SHELLS:
        add(Tool(name, Kind.RUNNER, Options(), shells.other_shell,
                 doc="code given is refused"))
    add(Tool("eval", Kind.SHELL, Options(), shells.eval_, doc="literal words are parsed"))
    add(Tool("source", Kind.SHELL, Options(), shells.source, doc="FILE read and parsed"))
    add(Tool(".", Kind.SHELL, Options(), shells.source, doc="FILE read and parsed"))

    add(Tool("env", Kind.WRAPPER, Options(
        value="uCS", flags="i0v",
        long_value=_lf("unset", "chdir", "split-string"),
        long_flags=_lf("ignore-environment", "null", "debug", "list-signal-handling",
                       *_COREUTILS),
        long_optional=_lf("default-signal", "ignore-signal", "block-signal")), runners.env))
    add(Tool("nice", Kind.WRAPPER, Options(value="n", long_value=_lf("adjustment"),
                                           long_flags=_COREUTILS, numeric=True),
             runners.plain))
    add(Tool("nohup", Kind.WRAPPER, Options(long_flags=_COREUTILS), runners.plain))
    add(Tool("timeout", Kind.WRAPPER, Options(
        value="ks", flags="vfp", long_value=_lf("kill-after", "signal"),
        long_flags=_lf("verbose", "foreground", "preserve-status", *_COREUTILS)),
        runners.plain, operands=1, no_command_long=_COREUTILS))
    add(Tool("stdbuf", Kind.WRAPPER, Options(
        value="ioe", long_value=_lf("input", "output", "error"), long_flags=_COREUTILS),
        runners.plain, no_command_long=_COREUTILS))
    add(Tool("time", Kind.WRAPPER, Options(
        value="fo", flags="apqvV", long_value=_lf("format", "output"),
        long_flags=_lf("append", "portability", "verbose", "quiet", *_COREUTILS)),
        runners.plain))
    add(Tool("command", Kind.WRAPPER, Options(flags="pvV"), runners.plain, no_command="vV"))
    add(Tool("builtin", Kind.WRAPPER, Options(), runners.plain))
    add(Tool("exec", Kind.WRAPPER, Options(value="a", flags="cl"), runners.plain))
    add(Tool("coproc", Kind.WRAPPER, Options(), runners.plain))
    add(Tool("ionice", Kind.WRAPPER, Options(
        value="cnpPu", flags="thV", long_value=_lf("class", "classdata", "pid", "pgid", "uid"),
        long_flags=_lf("ignore", *_COREUTILS)), runners.plain, no_command="pPuhV",
        no_command_long=_lf("pid", "pgid", "uid", *_COREUTILS)))
    add(Tool("chrt", Kind.WRAPPER, Options(
        value="TPD", flags="abdefioRrmpvhV",
        long_value=_lf("sched-runtime", "sched-period", "sched-deadline"),
        long_flags=_lf("all-tasks", "batch", "deadline", "fifo", "idle", "other", "rr",
                       "reset-on-fork", "pid", "max", "verbose", "ext", *_COREUTILS)),
        runners.plain, operands=1, no_command="pmhV",
        no_command_long=_lf("pid", "max", *_COREUTILS)))
    add(Tool("taskset", Kind.WRAPPER, Options(
        flags="acphV", long_flags=_lf("all-tasks", "cpu-list", "pid", *_COREUTILS)),
        runners.plain, operands=1, no_command="phV",
        no_command_long=_lf("pid", *_COREUTILS)))
    add(Tool("setsid", Kind.WRAPPER, Options(
        flags="cfwhV", long_flags=_lf("ctty", "fork", "wait", *_COREUTILS)),
        runners.plain, no_command="hV"))

    add(Tool("sudo", Kind.RUNNER, Options(
        value="aCcDgpRrTtUu", flags="ABbEeHiKklNnPSsVv", optional="h",
        long_value=_lf("auth-type", "close-from", "chdir", "group", "host", "prompt",
                       "chroot", "role", "type", "command-timeout", "other-user", "user",
                       "login-class"),
        long_flags=_lf("askpass", "background", "bell", "edit", "set-home", "help", "login",
                       "remove-timestamp", "reset-timestamp", "list", "non-interactive",
                       "preserve-groups", "stdin", "shell", "version", "validate"),
        long_optional=_lf("preserve-env")), runners.sudo,
        no_command="eKlvV", no_command_long=_lf("edit", "remove-timestamp", "list",
                                                "validate", "version", "help")))
    add(Tool("doas", Kind.RUNNER, Options(value="aCu", flags="Lns"), runners.sudo,
             no_command="CL"))
    su = Options(value="cgGsw", flags="flmpPhV",
                 long_value=_lf("command", "session-command", "group", "supp-group",
                                "shell", "whitelist-environment"),
                 long_flags=_lf("fast", "login", "preserve-environment", "pty", *_COREUTILS),
                 permute=True)
    add(Tool("su", Kind.RUNNER, su, shells.su))
    add(Tool("runuser", Kind.RUNNER,
             replace(su, value="cgGswu", long_value=su.long_value | {"user"}), shells.su))
    add(Tool("chroot", Kind.RUNNER, Options(
        long_value=_lf("userspec", "groups"), long_flags=_lf("skip-chdir", *_COREUTILS)),
        runners.plain, operands=1, no_command_long=_COREUTILS))
    ns = "muinpCUT"
    add(Tool("nsenter", Kind.RUNNER, Options(
        value="tSGW", flags="ahVecFZ", optional=ns + "rw",
        long_value=_lf("target", "setuid", "setgid", "wdns"),
        long_flags=_lf("all", "preserve-credentials", "env", "no-fork", "follow-context",
                       "join-cgroup", "user-parent", "keep-caps", *_COREUTILS),
        long_optional=_lf("mount", "uts", "ipc", "net", "pid", "cgroup", "user", "time",
                          "root", "wd")), runners.plain, no_command="hV",
        no_command_long=_COREUTILS))
    add(Tool("unshare", Kind.RUNNER, Options(
        value="RwSGl", flags="fhVrc", optional=ns,
        long_value=_lf("map-user", "map-users", "map-group", "map-groups", "propagation",
                       "setgroups", "setuid", "setgid", "root", "wd", "monotonic",
                       "boottime", "load-interp"),
        long_flags=_lf("fork", "map-root-user", "map-current-user", "map-auto", "keep-caps",
                       *_COREUTILS),
        long_optional=_lf("mount", "uts", "ipc", "net", "pid", "user", "cgroup", "time",
                          "kill-child", "mount-proc")), runners.plain, no_command="hV",
        no_command_long=_COREUTILS))
    add(Tool("flock", Kind.RUNNER, Options(
        value="wE", flags="sexunoFhV",
        long_value=_lf("timeout", "wait", "conflict-exit-code"),
        long_flags=_lf("shared", "exclusive", "unlock", "nonblock", "nb", "close", "no-fork",
                       "verbose", *_COREUTILS)), runners.flock))
    add(Tool("xargs", Kind.RUNNER, Options(
        value="aEILnsPd", flags="0oprtx", optional="eil",
        long_value=_lf("arg-file", "delimiter", "max-args", "max-procs", "max-chars",
                       "process-slot-var"),
        long_flags=_lf("null", "open-tty", "interactive", "no-run-if-empty", "verbose",
                       "exit", "show-limits", *_COREUTILS),
        long_optional=_lf("eof", "replace", "max-lines")), runners.xargs))
    add(Tool("parallel", Kind.RUNNER, Options(
        value="jSaCdEInNLPs", flags="kvuq0rmgXh",
        long_value=_lf("jobs", "sshlogin", "arg-file", "colsep", "delimiter", "eof",
                       "replace", "max-args", "max-replace-args", "max-lines", "max-procs",
                       "results", "tmpdir", "timeout", "joblog", "env", "workdir", "wd",
                       "basefile", "bf", "return", "transferfile", "tf", "sshloginfile",
                       "slf", "halt", "delay", "memfree", "load", "retries", "tagstring",
                       "tag-string", "header", "block", "block-size", "max-chars",
                       "sshdelay", "termseq", "nice", "shebang-wrap-string"),
        long_flags=_lf("keep-order", "verbose", "dry-run", "tag", "ungroup", "line-buffer",
                       "null", "quote", "pipe", "xargs", "eta", "progress", "bar", "group",
                       "no-notice", "will-cite", "no-run-if-empty", "halt-on-error",
                       "linebuffer", "citation", "help", "version", "lb", "keep")),
        runners.parallel))
    add(Tool("watch", Kind.RUNNER, Options(
        value="nq", flags="bcCegprtwxhv", optional="d",
        long_value=_lf("interval", "equexit"),
        long_flags=_lf("beep", "color", "no-color", "errexit", "chgexit", "precise",
                       "no-rerun", "no-title", "no-wrap", "no-linewrap", "exec", *_COREUTILS),
        long_optional=_lf("differences")), runners.watch))
    add(Tool("script", Kind.RUNNER, Options(
        value="BcEIOoTm", flags="aefqVh", optional="t",
        long_value=_lf("log-io", "command", "echo", "log-in", "log-out", "output-limit",
                       "logging-format", "log-timing"),
        long_flags=_lf("append", "return", "flush", "force", "quiet", *_COREUTILS),
        long_optional=_lf("timing"), permute=True), runners.script))
    add(Tool("find", Kind.RUNNER, Options(), runners.find))
    add(Tool("busybox", Kind.RUNNER, Options(), runners.busybox))
    add(Tool("trap", Kind.RUNNER, Options(flags="lpP"), shells.trap))
    mapfile = Options(value="dnOsuCc", flags="t")
    add(Tool("mapfile", Kind.RUNNER, mapfile, shells.mapfile))
    add(Tool("readarray", Kind.RUNNER, mapfile, shells.mapfile))
    return t


TOOLS: Mapping[str, Tool] = MappingProxyType(_table())

