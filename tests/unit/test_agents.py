"""The agents file: loading with FILE:LINE errors, authentication, credentials parsing,
adding agents atomically, and `gateway agents ...`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import agents as agents_module
from gateway.agents import (
    ANONYMOUS,
    AgentDirectory,
    AgentsFileError,
    add_agent,
    load_agents,
    new_token,
    token_sha256,
)
from gateway.cli import main

TOKEN = "s3cret-token_value"
OTHER = "another-token"
HASH = hashlib.sha256(TOKEN.encode()).hexdigest()
GOOD = f'version: 1\nagents:\n  - name: analyst\n    token_sha256: "{HASH}"\n'


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def directory(tmp_path: Path) -> AgentDirectory:
    """A directory holding one agent, 'analyst', whose token is TOKEN."""
    return load_agents(write(tmp_path / "agents.yaml", GOOD))


def basic(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


AUTHENTICATE = [
    ("right_token", "analyst", TOKEN, "analyst"),
    ("wrong_token", "analyst", OTHER, ANONYMOUS),
    ("empty_token", "analyst", "", ANONYMOUS),
    ("token_with_newline", "analyst", TOKEN + "\n", ANONYMOUS),
    ("name_other_case", "Analyst", TOKEN, ANONYMOUS),
    ("unknown_name", "nobody", TOKEN, ANONYMOUS),
    ("empty_name", "", TOKEN, ANONYMOUS),
    ("anonymous_name", ANONYMOUS, TOKEN, ANONYMOUS),
    ("no_name", None, TOKEN, ANONYMOUS),
    ("no_token", "analyst", None, ANONYMOUS),
    ("surrogate_token", "analyst", "\udcff", ANONYMOUS),
]


@pytest.mark.parametrize(("name", "token", "expected"), [a[1:] for a in AUTHENTICATE],
                         ids=[a[0] for a in AUTHENTICATE])
def test_authenticate(directory: AgentDirectory, name: str | None, token: str | None,
                      expected: str) -> None:
    """Only a known name with its own token yields that name; everything else is anonymous."""
    assert directory.authenticate(name, token) == expected


def test_unknown_name_is_compared_against_a_dummy_hash(directory: AgentDirectory,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A known and an unknown name both cost one hash and one constant-time comparison."""
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(agents_module.hmac, "compare_digest", counting)
    assert directory.authenticate("analyst", OTHER) == ANONYMOUS
    assert directory.authenticate("nobody", TOKEN) == ANONYMOUS
    assert len(calls) == 2
    assert all(len(a) == len(b) == 32 for a, b in calls)


def test_empty_directory_knows_nobody() -> None:
    """AgentDirectory.empty() authenticates no one and lists no names."""
    empty = AgentDirectory.empty()
    assert empty.names == ()
    assert empty.authenticate("analyst", TOKEN) == ANONYMOUS
    assert empty.from_proxy_authorization("Basic " + basic(f"analyst:{TOKEN}")) == ANONYMOUS


def test_repr_shows_names_not_hashes(directory: AgentDirectory) -> None:
    """The directory's repr names its agents and never shows a hash."""
    assert "analyst" in repr(directory)
    assert HASH not in repr(directory) and HASH[:16] not in repr(directory)


PROXY_AUTH = [
    ("valid", "Basic " + basic(f"analyst:{TOKEN}"), "analyst"),
    ("lowercase_scheme", "basic " + basic(f"analyst:{TOKEN}"), "analyst"),
    ("uppercase_scheme", "BASIC " + basic(f"analyst:{TOKEN}"), "analyst"),
    ("extra_spaces", "  Basic \t  " + basic(f"analyst:{TOKEN}") + "  \r\n", "analyst"),
    ("wrong_token", "Basic " + basic(f"analyst:{OTHER}"), ANONYMOUS),
    ("unknown_name", "Basic " + basic(f"nobody:{TOKEN}"), ANONYMOUS),
    ("no_scheme", basic(f"analyst:{TOKEN}"), ANONYMOUS),
    ("other_scheme", "Bearer " + basic(f"analyst:{TOKEN}"), ANONYMOUS),
    ("scheme_only", "Basic", ANONYMOUS),
    ("scheme_and_spaces", "Basic    ", ANONYMOUS),
    ("empty", "", ANONYMOUS),
    ("none", None, ANONYMOUS),
    ("bad_base64", "Basic !!!not-base64!!!", ANONYMOUS),
    ("missing_padding", "Basic " + basic(f"analyst:{TOKEN}").rstrip("="), ANONYMOUS),
    ("space_inside_base64", "Basic " + basic(f"analyst:{TOKEN}")[:4] + " "
     + basic(f"analyst:{TOKEN}")[4:], ANONYMOUS),
    ("non_ascii_base64", "Basic ÿÿÿÿ", ANONYMOUS),
    ("no_colon", "Basic " + basic(f"analyst{TOKEN}"), ANONYMOUS),
    ("non_utf8", "Basic " + basic(b"analyst:\xff\xfe" + TOKEN.encode()), ANONYMOUS),
    ("empty_name", "Basic " + basic(f":{TOKEN}"), ANONYMOUS),
    ("empty_credentials", "Basic " + basic(""), ANONYMOUS),
    ("surrogates", "Basic \udcff\udcfe", ANONYMOUS),
    ("huge", "Basic " + "A" * 100_000, ANONYMOUS),
]


@pytest.mark.parametrize(("header", "expected"), [p[1:] for p in PROXY_AUTH],
                         ids=[p[0] for p in PROXY_AUTH])
def test_from_proxy_authorization(directory: AgentDirectory, header: str | None,
                                  expected: str) -> None:
    """Basic credentials of a known agent name it; anything malformed is anonymous, not an error."""
    assert directory.from_proxy_authorization(header) == expected


CREDENTIALS = [
    ("valid", f"analyst:{TOKEN}", "analyst"),
    ("wrong_token", f"analyst:{OTHER}", ANONYMOUS),
    ("no_colon", f"analyst{TOKEN}", ANONYMOUS),
    ("empty", "", ANONYMOUS),
    ("none", None, ANONYMOUS),
    ("colon_only", ":", ANONYMOUS),
    ("trailing_newline", f"analyst:{TOKEN}\n", ANONYMOUS),
    ("spaces_around_name", f" analyst :{TOKEN}", ANONYMOUS),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CREDENTIALS],
                         ids=[c[0] for c in CREDENTIALS])
def test_from_credentials(directory: AgentDirectory, text: str | None, expected: str) -> None:
    """`name:token` names a known agent only when it matches exactly."""
    assert directory.from_credentials(text) == expected


@given(st.text())
def test_from_proxy_authorization_never_raises(header: str) -> None:
    """Arbitrary header text yields a name or anonymous, never an exception."""
    directory = AgentDirectory({"analyst": bytes.fromhex(HASH)})
    assert directory.from_proxy_authorization(header) in ("analyst", ANONYMOUS)
    assert directory.from_proxy_authorization("Basic " + header) in ("analyst", ANONYMOUS)


@given(st.sampled_from(["Basic", "basic", "BASIC", "bAsIc"]),
       st.text(" \t", max_size=3), st.text(" \t", min_size=1, max_size=3),
       st.text(" \t\r\n", max_size=3))
def test_valid_basic_credentials_authenticate_whatever_the_spacing(
        scheme: str, before: str, between: str, after: str) -> None:
    """Scheme case and surrounding whitespace do not change who a valid header names."""
    directory = AgentDirectory({"analyst": bytes.fromhex(HASH)})
    header = f"{before}{scheme}{between}{basic(f'analyst:{TOKEN}')}{after}"
    assert directory.from_proxy_authorization(header) == "analyst"


def entry(name: str, digest: str = HASH) -> str:
    return f'  - name: {name}\n    token_sha256: "{digest}"\n'


LOAD_ERRORS = [
    ("duplicate_name", "version: 1\nagents:\n" + entry("a") + entry("b") + entry("a"), 7,
     "duplicate agent name 'a'"),
    ("bad_name_space", "version: 1\nagents:\n" + entry("'bad name'"), 3,
     "agents.0.name: agent name 'bad name' is not valid"),
    ("bad_name_leading_dot", "version: 1\nagents:\n" + entry("a") + entry(".hidden"), 5,
     "agents.1.name: agent name '.hidden' is not valid"),
    ("name_too_long", "version: 1\nagents:\n" + entry("a" * 65), 3, "is not valid"),
    ("name_with_colon", "version: 1\nagents:\n" + entry("'a:b'"), 3, "is not valid"),
    ("name_not_a_string", "version: 1\nagents:\n" + entry("123"), 3,
     "agents.0.name: must be a string"),
    ("anonymous_reserved", "version: 1\nagents:\n" + entry("anonymous"), 3, "is reserved"),
    ("anonymous_reserved_any_case", "version: 1\nagents:\n" + entry("Anonymous"), 3,
     "is reserved"),
    ("hash_too_short", "version: 1\nagents:\n" + entry("a", "ab" * 31), 4,
     "agents.0.token_sha256: must be 64 hex digits (the token's SHA-256), not 62"),
    ("hash_not_hex", "version: 1\nagents:\n" + entry("a", "zz" * 32), 4,
     "found a non-hex character"),
    ("hash_of_empty_token", "version: 1\nagents:\n" + entry("a", hashlib.sha256(b"").hexdigest()),
     4, "SHA-256 of an empty token"),
    ("unknown_key_in_agent", "version: 1\nagents:\n" + entry("a") + "    token: x\n", 5,
     "unknown key 'token' in agents.0"),
    ("unknown_top_key", "version: 1\nagent:\n" + entry("a"), 2, "unknown key 'agent'"),
    ("missing_version", "agents:\n" + entry("a"), 1, "missing key 'version'"),
    ("wrong_version", "version: 2\nagents: []\n", 1, "unsupported agents file version"),
    ("missing_hash", "version: 1\nagents:\n  - name: a\n", 3,
     "missing key 'agents.0.token_sha256'"),
    ("agents_not_a_list", "version: 1\nagents: analyst\n", 2, "agents: must be a list"),
    ("not_a_mapping", "- analyst\n", 1, "must be a mapping with 'version' and 'agents'"),
    ("duplicate_key", "version: 1\nversion: 1\n", 2, "duplicate key 'version'"),
    ("python_tag", "version: 1\nagents: !!python/object:os.system {}\n", 2,
     "is not allowed in an agents file"),
    ("merge_key", "version: 1\nbase: &b {name: a}\nagents:\n  - <<: *b\n", 4,
     "merge keys"),
    ("invalid_yaml", "version: 1\nagents: [\n", 3, "invalid YAML"),
]


@pytest.mark.parametrize(("text", "line", "message"), [e[1:] for e in LOAD_ERRORS],
                         ids=[e[0] for e in LOAD_ERRORS])
def test_load_errors_name_file_and_line(tmp_path: Path, text: str, line: int,
                                        message: str) -> None:
    """An unusable agents file is refused with FILE:LINE: and the reason."""
    path = write(tmp_path / "agents.yaml", text)
    with pytest.raises(AgentsFileError) as raised:
        load_agents(path)
    assert str(raised.value).startswith(f"{path}:{line}: ")
    assert message in str(raised.value)


FILE_ERRORS = [
    ("empty", "", "the agents file is empty"),
    ("nul_byte", "version: 1\x00\n", "NUL byte"),
    ("too_large", "#" * (1 << 20) + "\n", "larger than"),
]


@pytest.mark.parametrize(("text", "message"), [e[1:] for e in FILE_ERRORS],
                         ids=[e[0] for e in FILE_ERRORS])
def test_unreadable_contents_are_refused(tmp_path: Path, text: str, message: str) -> None:
    """Empty, binary or oversized files are refused by the shared reader, worded for agents."""
    path = write(tmp_path / "agents.yaml", text)
    with pytest.raises(AgentsFileError, match=message) as raised:
        load_agents(path)
    assert str(raised.value).startswith(f"{path}:")
    assert "policy" not in str(raised.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    """load_agents of a missing file is an error naming it, not an empty directory."""
    with pytest.raises(AgentsFileError, match="cannot read the agents file"):
        load_agents(tmp_path / "absent.yaml")


def test_directory_is_refused(tmp_path: Path) -> None:
    """A path that is not a regular file is refused."""
    with pytest.raises(AgentsFileError, match="not a regular file"):
        load_agents(tmp_path)


def test_version_only_and_empty_list_mean_no_agents(tmp_path: Path) -> None:
    """A file with no agents, or an empty list, loads as a directory that knows nobody."""
    for text in ("version: 1\n", "version: 1\nagents: []\n", "version: 1\nagents:\n"):
        assert load_agents(write(tmp_path / "agents.yaml", text)).names == ()


def test_hash_is_case_insensitive(tmp_path: Path) -> None:
    """An uppercase hex hash matches the same token."""
    path = write(tmp_path / "agents.yaml", GOOD.replace(HASH, HASH.upper()))
    assert load_agents(path).authenticate("analyst", TOKEN) == "analyst"


PERMISSIONS = [
    ("private", 0o600, None),
    ("world_readable", 0o644, None),
    ("read_only", 0o400, None),
    ("group_writable", 0o620, "writable by group or others (mode 0620)"),
    ("world_writable", 0o602, "writable by group or others (mode 0602)"),
    ("all_writable", 0o666, "writable by group or others (mode 0666)"),
]


@pytest.mark.parametrize(("mode", "refusal"), [p[1:] for p in PERMISSIONS],
                         ids=[p[0] for p in PERMISSIONS])
def test_writable_by_others_is_refused(tmp_path: Path, mode: int, refusal: str | None) -> None:
    """A file that group or others may write is refused for loading and for adding."""
    path = write(tmp_path / "agents.yaml", GOOD, mode)
    if refusal is None:
        assert load_agents(path).names == ("analyst",)
        return
    before = path.read_bytes()
    for call in (lambda: load_agents(path), lambda: add_agent(path, "coder")):
        with pytest.raises(AgentsFileError, match=refusal.replace("(", r"\(").replace(")", r"\)")):
            call()
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_add_agent_creates_a_private_file_whose_token_authenticates(tmp_path: Path) -> None:
    """add_agent on a missing file writes version 1 with mode 0600; the returned token works."""
    path = tmp_path / "agents.yaml"
    token = add_agent(path, "analyst")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("version: 1\n")
    assert token not in path.read_text()
    assert token_sha256(token) in path.read_text()
    loaded = load_agents(path)
    assert loaded.names == ("analyst",)
    assert loaded.authenticate("analyst", token) == "analyst"
    assert loaded.authenticate("analyst", new_token()) == ANONYMOUS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agents.yaml"]


def test_add_agent_appends_and_keeps_comments(tmp_path: Path) -> None:
    """Adding to a file keeps its text, comments included, and every earlier token still works."""
    path = tmp_path / "agents.yaml"
    first = add_agent(path, "analyst")
    path.write_text("# who may use the gateway\n" + path.read_text() + "# end\n")
    second = add_agent(path, "coder")
    third = add_agent(path, "x.y-z_9")
    text = path.read_text()
    assert text.startswith("# who may use the gateway\n") and "# end\n" in text
    loaded = load_agents(path)
    assert loaded.names == ("analyst", "coder", "x.y-z_9")
    assert [loaded.authenticate(n, t) for n, t in
            [("analyst", first), ("coder", second), ("x.y-z_9", third)]] == list(loaded.names)
    assert len({first, second, third}) == 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


REWRITTEN = [
    ("version_only", "version: 1\n"),
    ("null_list", "version: 1\nagents:\n"),
    ("flow_empty_list", "version: 1\nagents: []\n"),
    ("flow_list", f'version: 1\nagents: [{{name: analyst, token_sha256: "{HASH}"}}]\n'),
    ("version_last", f'agents:\n{entry("analyst")}version: 1\n'),
    ("unindented_list", f'version: 1\nagents:\n- name: analyst\n  token_sha256: "{HASH}"\n'),
    ("no_final_newline", GOOD.rstrip("\n")),
]


@pytest.mark.parametrize("text", [r[1] for r in REWRITTEN], ids=[r[0] for r in REWRITTEN])
def test_add_agent_result_always_loads(tmp_path: Path, text: str) -> None:
    """Whatever layout the file has, after add_agent it loads with the old agents plus the new."""
    path = write(tmp_path / "agents.yaml", text)
    old = load_agents(path).names
    token = add_agent(path, "coder")
    loaded = load_agents(path)
    assert loaded.names == (*old, "coder")
    assert loaded.authenticate("coder", token) == "coder"
    if old:
        assert loaded.authenticate("analyst", TOKEN) == "analyst"


ADD_REFUSED = [
    ("existing_name", GOOD, "analyst", "already exists"),
    ("reserved_name", GOOD, "anonymous", "is reserved"),
    ("reserved_name_any_case", GOOD, "ANONYMOUS", "is reserved"),
    ("bad_name", GOOD, "bad name", "is not valid"),
    ("empty_name", GOOD, "", "is not valid"),
    ("invalid_file", GOOD + "extra: 1\n", "coder", "unknown key 'extra'"),
]


@pytest.mark.parametrize(("text", "name", "message"), [a[1:] for a in ADD_REFUSED],
                         ids=[a[0] for a in ADD_REFUSED])
def test_refused_add_leaves_the_file_unchanged(tmp_path: Path, text: str, name: str,
                                               message: str) -> None:
    """A refused add raises AgentsFileError and leaves the file and its directory as they were."""
    path = write(tmp_path / "agents.yaml", text, 0o640)
    before = (path.read_bytes(), path.stat().st_ino, path.stat().st_mode)
    with pytest.raises(AgentsFileError, match=message):
        add_agent(path, name)
    assert (path.read_bytes(), path.stat().st_ino, path.stat().st_mode) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agents.yaml"]


def test_existing_name_error_names_its_line(tmp_path: Path) -> None:
    """Refusing an existing name points at the line where it is defined."""
    path = write(tmp_path / "agents.yaml", "version: 1\nagents:\n" + entry("a") + entry("b"))
    with pytest.raises(AgentsFileError, match=f"^{path}:5: agent 'b' already exists"):
        add_agent(path, "b")


def test_bad_name_creates_no_file(tmp_path: Path) -> None:
    """A refused name on a missing file creates nothing."""
    with pytest.raises(AgentsFileError):
        add_agent(tmp_path / "agents.yaml", "no/slash")
    assert list(tmp_path.iterdir()) == []


def test_add_into_missing_directory_is_an_error(tmp_path: Path) -> None:
    """A file in a directory that does not exist cannot be created: AgentsFileError, no traceback."""
    with pytest.raises(AgentsFileError, match="cannot write the agents file"):
        add_agent(tmp_path / "absent" / "agents.yaml", "analyst")


def test_add_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    """Adding through a symlink updates the file it points to and leaves the link in place."""
    real = write(tmp_path / "real.yaml", GOOD)
    link = tmp_path / "agents.yaml"
    link.symlink_to(real)
    token = add_agent(link, "coder")
    assert link.is_symlink()
    assert load_agents(real).authenticate("coder", token) == "coder"


def test_new_token_is_fresh_and_url_safe() -> None:
    """Tokens are 43 URL-safe characters, different every time."""
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) == 43 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)


# --- gateway agents ... ---------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_add_prints_token_once_with_proxy_url_and_env_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`agents add` prints the token, the proxy URL and GATEWAY_AGENT/GATEWAY_TOKEN; the token works."""
    path = tmp_path / "agents.yaml"
    code, out, err = run(capsys, "agents", "add", "analyst", "--file", str(path),
                         "--proxy", "gateway:3128")
    assert (code, err) == (0, "")
    token = next(line.split("=", 1)[1] for line in out.splitlines()
                 if line.strip().startswith("GATEWAY_TOKEN="))
    assert f"http://analyst:{token}@gateway:3128" in out
    assert "  GATEWAY_AGENT=analyst\n" in out
    assert f"\n  {token}\n" in out
    assert load_agents(path).authenticate("analyst", token) == "analyst"
    assert load_agents(path).from_proxy_authorization(
        "Basic " + basic(f"analyst:{token}")) == "analyst"


def test_cli_add_default_proxy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --proxy the URL names 127.0.0.1:8080."""
    code, out, _ = run(capsys, "agents", "add", "analyst", "--file", str(tmp_path / "a.yaml"))
    assert code == 0 and "@127.0.0.1:8080\n" in out


def test_cli_list_prints_names_never_hashes(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`agents list` prints one name per line, in file order, and no hash."""
    path = write(tmp_path / "agents.yaml", "version: 1\nagents:\n" + entry("zed") + entry("abe"))
    assert run(capsys, "agents", "list", "--file", str(path)) == (0, "zed\nabe\n", "")


def test_cli_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`agents check` on a good file says OK with the count and exits 0."""
    path = write(tmp_path / "agents.yaml", GOOD)
    assert run(capsys, "agents", "check", "--file", str(path)) == (
        0, f"OK: 1 agent in {path}\n", "")


CLI_ERRORS = [
    ("check_duplicate", ["check"], "version: 1\nagents:\n" + entry("a") + entry("a"),
     ":5: duplicate agent name 'a'"),
    ("list_invalid", ["list"], "version: 1\nagents:\n" + entry("a", "00"), ":4: agents.0"),
    ("check_loose_mode", ["check"], None, "writable by group or others"),
    ("add_existing", ["add", "analyst"], GOOD, ":3: agent 'analyst' already exists"),
    ("add_reserved", ["add", "anonymous"], GOOD, "is reserved"),
    ("add_bad_proxy", ["add", "coder", "--proxy", "localhost"], GOOD, "--proxy must be HOST:PORT"),
    ("add_bad_port", ["add", "coder", "--proxy", "h:99999"], GOOD, "--proxy must be HOST:PORT"),
    ("check_missing", ["check"], "", "cannot read the agents file"),
]


@pytest.mark.parametrize(("args", "text", "message"), [c[1:] for c in CLI_ERRORS],
                         ids=[c[0] for c in CLI_ERRORS])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              args: list[str], text: str | None,
                                              message: str) -> None:
    """Bad input prints one `gateway: ...` line on stderr, nothing on stdout, exits 2, changes nothing."""
    path = tmp_path / "agents.yaml"
    if text is None:
        write(path, GOOD, 0o666)
    elif text:
        write(path, text)
    before = path.read_bytes() if path.exists() else None
    code, out, err = run(capsys, "agents", *args, "--file", str(path))
    assert (code, out) == (2, "")
    assert err.startswith("gateway: ") and err.count("\n") == 1
    assert message in err
    assert (path.read_bytes() if path.exists() else None) == before


HELP = [
    (["agents", "--help"], "mint identities"),
    (["agents", "add", "--help"], "--proxy HOST:PORT"),
    (["agents", "list", "--help"], "never printed"),
    (["agents", "check", "--help"], "FILE:LINE"),
]


@pytest.mark.parametrize(("argv", "phrase"), HELP, ids=[" ".join(h[0]) for h in HELP])
def test_cli_help(capsys: pytest.CaptureFixture[str], argv: list[str], phrase: str) -> None:
    """Each `agents` command has help that explains it."""
    with pytest.raises(SystemExit) as raised:
        main(argv)
    out = " ".join(capsys.readouterr().out.split())
    assert raised.value.code == 0 and phrase in out


def test_cli_file_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    """`agents list` without --file is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as raised:
        main(["agents", "list"])
    assert raised.value.code == 2
    assert "--file" in capsys.readouterr().err


def test_written_file_is_the_only_trace(tmp_path: Path) -> None:
    """No temporary file is left behind after adds, refused or not."""
    path = tmp_path / "agents.yaml"
    add_agent(path, "a")
    with pytest.raises(AgentsFileError):
        add_agent(path, "a")
    add_agent(path, "b")
    assert os.listdir(tmp_path) == ["agents.yaml"]
