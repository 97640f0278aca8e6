"""The SDK's static analysis: Python and shell blocks become the actions they would
take, with literal targets, import aliases followed, and run-time targets dynamic."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sdk import analyse_block, analyse_python

R, W, X, N = "file_read", "file_write", "shell_exec", "network"
D = None  # dynamic

CASES = {
    # files
    "open reads by default": ('open("/etc/passwd").read()', [(R, "/etc/passwd")]),
    "open mode w writes": ('open("out.csv", "w")', [(W, "out.csv")]),
    "open mode keyword": ('open("out.csv", mode="a")', [(W, "out.csv")]),
    "open r+ reads and writes": ('open("db", "r+")', [(R, "db"), (W, "db")]),
    "open unknown mode is both": ('open("db", m)', [(R, "db"), (W, "db")]),
    "with open": ('with open("/data/x") as f:\n    f.read()', [(R, "/data/x")]),
    "file keyword": ('open(file="a.txt")', [(R, "a.txt")]),
    "io.open": ('import io\nio.open("a", "wb")', [(W, "a")]),
    "os.open flags": ('import os\nos.open("k", os.O_WRONLY | os.O_CREAT)', [(W, "k")]),
    "os.open flags unknown": ("import os\nos.open('k', flags)", [(R, "k"), (W, "k")]),
    "pathlib write_text": ('from pathlib import Path\nPath("x").write_text("hi")', [(W, "x")]),
    "pathlib read via variable": ('from pathlib import Path\np = Path("/etc") / "shadow"\np.read_text()', [(R, "/etc/shadow")]),
    "pathlib module alias": ('import pathlib as pl\npl.Path("a", "b").unlink()', [(W, "a/b")]),
    "pathlib open mode": ('from pathlib import Path\nPath("o").open("w")', [(W, "o")]),
    "pathlib home": ('from pathlib import Path\n(Path.home() / ".ssh" / "id_rsa").read_bytes()', [(R, "~/.ssh/id_rsa")]),
    "pathlib rename": ('from pathlib import Path\nPath("a").rename("b")', [(W, "a"), (W, "b")]),
    "shutil copy": ('import shutil\nshutil.copy("/etc/hosts", "h")', [(R, "/etc/hosts"), (W, "h")]),
    "shutil move": ('import shutil\nshutil.move("a", "b")', [(W, "a"), (W, "b")]),
    "shutil rmtree": ('import shutil\nshutil.rmtree("/home")', [(W, "/home")]),
    "os.remove": ('import os\nos.remove("f")', [(W, "f")]),
    "from os import remove as rm": ('from os import remove as rm\nrm("/etc/hosts")', [(W, "/etc/hosts")]),
    "os.path.join folded": ('import os\nopen(os.path.join("/data", "x.csv"))', [(R, "/data/x.csv")]),
    "module constant": ('BASE = "/data"\nopen(BASE + "/in.csv")', [(R, "/data/in.csv")]),
    "f-string of a constant": ('BASE = "/data"\nopen(f"{BASE}/in.csv")', [(R, "/data/in.csv")]),
    # commands
    "os.system": ('import os\nos.system("rm -rf /")', [(X, "rm -rf /")]),
    "from os import system": ('from os import system\nsystem("ls")', [(X, "ls")]),
    "os.popen": ('import os\nos.popen("id")', [(X, "id")]),
    "subprocess argv quoted": ('import subprocess\nsubprocess.run(["rm", "-rf", "my dir"])', [(X, "rm -rf 'my dir'")]),
    "subprocess alias": ('import subprocess as sp\nsp.check_output(["ls"])', [(X, "ls")]),
    "subprocess shell": ('import subprocess\nsubprocess.run("ls | wc -l", shell=True)', [(X, "ls | wc -l")]),
    "subprocess string without shell": ('import subprocess\nsubprocess.run("ls -l")', [(X, "'ls -l'")]),
    "subprocess executable": ('import subprocess\nsubprocess.run(["ls", "/"], executable="/bin/rm")', [(X, "/bin/rm /")]),
    "subprocess star import": ('from subprocess import *\nPopen(["curl", "x"])', [(X, "curl x")]),
    "getoutput": ('import subprocess\nsubprocess.getoutput("whoami")', [(X, "whoami")]),
    "os.execvp": ('import os\nos.execvp("rm", ["rm", "-rf", "/"])', [(X, "rm -rf /")]),
    "os.execl": ('import os\nos.execl("/bin/rm", "rm", "-rf", "/")', [(X, "/bin/rm -rf /")]),
    "os.spawnlp": ('import os\nos.spawnlp(os.P_WAIT, "ls", "ls", "-l")', [(X, "ls -l")]),
    "asyncio subprocess exec": ('import asyncio\nasyncio.create_subprocess_exec("ls", "-a")', [(X, "ls -a")]),
    "__import__ of a literal": ('__import__("os").system("id")', [(X, "id")]),
    "importlib literal": ('import importlib\nimportlib.import_module("subprocess").call(["id"])', [(X, "id")]),
    "getattr of a literal": ('import os\ngetattr(os, "system")("id")', [(X, "id")]),
    "exec of a literal is analysed": ("exec(\"import os\\nos.system('id')\")", [(X, "id")]),
    # network
    "requests post": ('import requests\nrequests.post("https://x.invalid/u", data=b"")', [(N, "https://x.invalid/u")]),
    "requests session": ('import requests\ns = requests.Session()\ns.get("https://a.example/")', [(N, "https://a.example/")]),
    "requests with session": ('import requests\nwith requests.Session() as s:\n    s.put("http://b.example")', [(N, "http://b.example")]),
    "httpx client": ('import httpx\nhttpx.Client().get("https://c.example")', [(N, "https://c.example")]),
    "httpx request": ('import httpx\nhttpx.request("DELETE", "https://d.example/x")', [(N, "https://d.example/x")]),
    "urlopen": ('from urllib.request import urlopen\nurlopen("http://e.example/")', [(N, "http://e.example/")]),
    "urllib Request once": ('import urllib.request as r\nreq = r.Request("http://f.example")\nr.urlopen(req)', [(N, "http://f.example")]),
    "aiohttp session": ('import aiohttp\nasync def f():\n    async with aiohttp.ClientSession() as s:\n        await s.get("https://g.example")', [(N, "https://g.example")]),
    "http.client": ('import http.client\nhttp.client.HTTPSConnection("h.example")', [(N, "h.example:443")]),
    "http.client port": ('from http.client import HTTPConnection\nHTTPConnection("h.example", 8080)', [(N, "h.example:8080")]),
    "socket create_connection": ('import socket\nsocket.create_connection(("db.internal", 5432))', [(N, "db.internal:5432")]),
    "socket connect": ('import socket\ns = socket.socket()\ns.connect(("::1", 22))', [(N, "[::1]:22")]),
    # dynamic
    "open of a parameter": ("def f(p):\n    return open(p)", [(R, D)]),
    "f-string with a variable": ('open(f"{d}/x", "w")', [(W, D)]),
    "concatenation with a variable": ('open("/data/" + name)', [(R, D)]),
    "name bound twice": ('p = "a"\np = "b"\nopen(p)', [(R, D)]),
    "loop variable path": ('from pathlib import Path\nfor f in Path("d").glob("*"):\n    f.read_text()', [(R, "d"), (R, D)]),
    "os.system of a variable": ("import os\nos.system(cmd)", [(X, D)]),
    "argv with a variable": ('import subprocess\nsubprocess.run(["rm", target])', [(X, D)]),
    "shell decided at run time": ('import subprocess\nsubprocess.run("ls", shell=flag)', [(X, D)]),
    "url built at run time": ('import requests\nrequests.get(base + "/x")', [(N, D)]),
    "getattr of a variable": ("import os\ngetattr(os, name)('x')", [(X, D)]),
    "__import__ of a variable": ("__import__(m).run()", [(X, D)]),
    "exec of a variable": ("exec(code)", [(X, D)]),
    "relative path after chdir": ('import os\nos.chdir("/")\nopen("etc/passwd")', [(R, D)]),
    # nothing
    "print only": ('print("hello")', []),
    "rebound open is not followed": ('def open(x):\n    pass\nopen("/etc/passwd")', []),
    "user function named system": ('def system(c):\n    pass\nsystem("rm -rf /")', []),
}


@pytest.mark.parametrize("source, expected", CASES.values(), ids=CASES.keys())
def test_python_analysis_finds(source: str, expected: list[tuple[str, str | None]]) -> None:
    """Each construct yields exactly these actions and targets, in order."""
    analysis = analyse_python(source)
    assert analysis.problem is None
    assert [(f.action.value, f.target) for f in analysis.found] == expected


def test_found_carries_line_call_and_method() -> None:
    """A found action says where it is and how it was written."""
    source = 'import requests\n\nrequests.post(\n    "https://x.invalid/u",\n    json={})'
    (found,) = analyse_python(source).found
    assert (found.line, found.call, found.method) == \
        (3, 'requests.post( "https://x.invalid/u", json={})', "POST")


def test_dynamic_says_why() -> None:
    (found,) = analyse_python("open(p)").found
    assert found.dynamic and found.why == "the path is built at run time"


def test_imports_of_watched_modules_are_noted() -> None:
    """Imports of the modules the analysis watches are listed; others are not."""
    source = "import numpy\nimport subprocess as sp\nfrom urllib.request import urlopen\nimport os.path"
    assert analyse_python(source).imports == ("subprocess", "urllib.request", "os.path")


BAD = {
    "syntax error": ("def (:", "cannot analyse: line 1: invalid syntax"),
    "NUL byte": ("print(1)\x00", "cannot analyse: source code string cannot contain null bytes"),
    "deeply nested": ("(" * 300 + ")" * 300, "cannot analyse: line 1: too many nested parentheses"),
}


@pytest.mark.parametrize("source, problem", BAD.values(), ids=BAD.keys())
def test_unparsable_python_is_a_problem_not_an_exception(source: str, problem: str) -> None:
    assert analyse_python(source).problem == problem


BLOCKS = {
    "bash is one command line": ("bash", "cd w && rm -rf x\n", [(X, "cd w && rm -rf x\n")]),
    "sh": ("sh", "ls", [(X, "ls")]),
    "shell": ("shell", "ls", [(X, "ls")]),
    "console": ("console", "ls", [(X, "ls")]),
    "empty shell block runs nothing": ("bash", "  \n", []),
    "py is python": ("py", 'open("a", "w")', [(W, "a")]),
    "Python3 is python": ("Python3", 'open("a")', [(R, "a")]),
}


@pytest.mark.parametrize("language, code, expected", BLOCKS.values(), ids=BLOCKS.keys())
def test_block_languages(language: str, code: str, expected: list[tuple[str, str]]) -> None:
    """Shell blocks go whole to the engine's command analysis; Python to ast."""
    analysis = analyse_block(code, language)
    assert analysis.problem is None
    assert [(f.action.value, f.target) for f in analysis.found] == expected


@pytest.mark.parametrize("language", ["ruby", "pwsh", "javascript", ""])
def test_other_languages_cannot_be_analysed(language: str) -> None:
    """A language the SDK cannot analyse is refused (fail closed), saying which."""
    problem = analyse_block("x", language).problem
    assert problem is not None and problem.startswith("cannot analyse: ")
    assert (language or "untagged") in problem


@given(st.text(max_size=300), st.sampled_from(["python", "bash", "sh", "ruby", ""]))
@settings(max_examples=300, deadline=None)
def test_analysis_never_raises(code: str, language: str) -> None:
    """Any text in any language is actions or a problem, never an exception."""
    analysis = analyse_block(code, language)
    assert analysis.problem is not None or all(f.line >= 1 for f in analysis.found)


@given(st.lists(st.sampled_from([
    "import os", "import subprocess as sp", "from pathlib import Path", "p = Path('a')",
    "open('x', 'w')", "os.system(c)", "sp.run(['ls', x])", "p.write_text('y')", "x = 'b'",
    "for q in r:\n    open(q)", "def f(p):\n    return p", "exec('os.remove(1)')",
    "getattr(os, 'system')('id')", "c = 'ls'"]), max_size=12))
@settings(max_examples=200, deadline=None)
def test_generated_programs_analyse(lines: list[str]) -> None:
    """Programs made of the constructs the analysis knows always analyse."""
    assert analyse_python("\n".join(lines)).problem is None


def test_a_long_block_analyses_quickly() -> None:
    """Thousands of calls cost linear time (call texts are not re-split per call)."""
    source = "\n".join(f'open("f{i}", "w")' for i in range(5000))
    started = time.perf_counter()
    assert len(analyse_python(source).found) == 5000
    assert time.perf_counter() - started < 5


def test_a_chain_too_long_to_follow_is_a_problem() -> None:
    """Names bound through thousands of other names: refused, not a RecursionError."""
    source = "\n".join(f"a{i} = a{i + 1}" for i in range(3000)) + "\nopen(a0)"
    assert analyse_python(source).problem == "cannot analyse: the code is nested too deeply"


def test_call_text_is_as_written_across_lines() -> None:
    """The call as written, whitespace folded, with CRLF and non-ASCII lines."""
    source = 'x = 1\r\nopen("é",\r\n  "w")\rimport os; os.system(\n"a")'
    assert [(f.line, f.call) for f in analyse_python(source).found] == \
        [(2, 'open("é", "w")'), (4, 'os.system( "a")')]
