"""`gateway agents add|list|check`: the agents file, where each agent's name and token
hash are kept."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.agents import add_agent, load_agents
from gateway.errors import GatewayError

EXIT_OK = 0
DEFAULT_PROXY = "127.0.0.1:8080"


def add_commands(sub: Any) -> None:
    """Register `gateway agents ...` on the `gateway` parser's subcommands."""
    agents = sub.add_parser(
        "agents", help="add, list and check the agents that may authenticate to the gateway",
        description="Manage the agents file (YAML): each agent's name and the SHA-256 of its "
                    "token. An agent presents name and token as proxy credentials; a request "
                    "without valid ones is from 'anonymous'. The file is the gateway's alone: "
                    "whoever can write it can mint identities.")
    cmds = agents.add_subparsers(title="agents commands", metavar="COMMAND")

    add = cmds.add_parser(
        "add", help="add an agent with a fresh token and print the token once",
        description="Add agent NAME with a fresh random token and print the token, once, with "
                    "the proxy URL and environment lines that carry it. Only the token's "
                    "SHA-256 is written. A missing file is created; an existing name is "
                    "refused. The file is replaced atomically with mode 0600.")
    add.add_argument("name", metavar="NAME",
                     help="1 to 64 letters, digits, '_', '.' or '-', starting with a letter or "
                          "digit; 'anonymous' is reserved")
    _add_file(add)
    add.add_argument("--proxy", metavar="HOST:PORT", default=DEFAULT_PROXY,
                     help=f"the gateway proxy's address, shown in the printed proxy URL "
                          f"(default {DEFAULT_PROXY})")
    add.set_defaults(run=_run_add)

    list_ = cmds.add_parser("list", help="print the agents' names, one per line",
                            description="Print the names in the agents file, one per line, "
                                        "in file order. Token hashes are never printed.")
    _add_file(list_)
    list_.set_defaults(run=_run_list)

    check = cmds.add_parser(
        "check", help="validate the agents file",
        description="Check the agents file as the gateway loads it: YAML, schema, unique "
                    "names, and that group and others cannot write it. Prints 'OK: N agents' "
                    "and exits 0, or prints FILE:LINE: message and exits 2.")
    _add_file(check)
    check.set_defaults(run=_run_check)


def _add_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", metavar="AGENTS", required=True, help="the agents file (YAML)")


def _proxy_address(value: str) -> str:
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isascii() or not port.isdigit() \
            or not 1 <= int(port) <= 65535 or any(c.isspace() or c in "/@" for c in host):
        raise GatewayError(f"--proxy must be HOST:PORT, e.g. {DEFAULT_PROXY}; got {value!r}")
    return value


def _run_add(args: argparse.Namespace) -> int:
    proxy = _proxy_address(args.proxy)
    token = add_agent(args.file, args.name)
    url = f"http://{args.name}:{token}@{proxy}"
    print(f"Added agent '{args.name}' to {args.file}. Its token is shown only now:\n"
          f"\n"
          f"  {token}\n"
          f"\n"
          f"Through the proxy:\n"
          f"  HTTP_PROXY={url}\n"
          f"  HTTPS_PROXY={url}\n"
          f"\n"
          f"For the decision API:\n"
          f"  GATEWAY_AGENT={args.name}\n"
          f"  GATEWAY_TOKEN={token}")
    return EXIT_OK


def _run_list(args: argparse.Namespace) -> int:
    for name in load_agents(args.file).names:
        print(name)
    return EXIT_OK


def _run_check(args: argparse.Namespace) -> int:
    count = len(load_agents(args.file).names)
    print(f"OK: {count} agent{'' if count == 1 else 's'} in {args.file}")
    return EXIT_OK
