"""What the local stack needs on this machine before it starts anything: its ports free, and its state folder not
held by another running stack.

A second ``make dev`` on the same ports must not half-start (a server thread dying on "address in use" while the
rest waits for it) nor, when stopped, delete the first stack's ``stack.json``: it is refused at once, naming every
busy port with the flag that moves it and free ports to move it to.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
_SEARCH_AHEAD = 50  # how far past a busy port a free one is looked for, to suggest it


@dataclass(frozen=True)
class Listener:
    """A server the stack starts: what it is, the flag that sets its port, the port (0: any free one)."""

    name: str
    flag: str
    port: int


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now (as the stack's servers bind: SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def running_stack_pid(stack_file: Path) -> int | None:
    """The process id of the live stack that wrote ``stack_file``; None if there is none, or it is gone."""
    try:
        pid = int(json.loads(stack_file.read_text()).get("pid"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if pid == os.getpid():
        return pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, someone else's
    return pid


def problems_before_start(listeners: list[Listener], stack_file: Path) -> list[str]:
    """Everything that would stop the stack from starting here, each with its way out; [] when it can start."""
    problems: list[str] = []
    changes: list[str] = []
    taken = {listener.port for listener in listeners if listener.port}
    for listener in listeners:
        if listener.port and not port_is_free(listener.port):
            problems.append(f"port {listener.port} ({listener.name}, {listener.flag}) is in use on {HOST}")
            alternative = _free_port_after(listener.port, taken)
            taken.add(alternative)
            changes.append(f"{listener.flag} {alternative}")
    same = _shared_ports(listeners)
    if same:
        problems.append(f"the same port for {same}: give each its own")
    pid = running_stack_pid(stack_file)
    if pid is not None and pid != os.getpid():
        problems.append(f"{stack_file} belongs to a local stack that is running (pid {pid})")
        changes.append(f"--state-dir {stack_file.parent}-2")
    if problems and changes:
        problems.append(
            "another make dev may be running: stop it (Ctrl-C in its terminal), or start this one beside it with "
            f'make dev ARGS="{" ".join(changes)}" (or --... 0 for any free port)'
        )
    return problems


def _free_port_after(port: int, taken: set[int]) -> int:
    for candidate in range(port + 1, min(port + _SEARCH_AHEAD, 65535) + 1):
        if candidate not in taken and port_is_free(candidate):
            return candidate
    return 0


def _shared_ports(listeners: list[Listener]) -> str:
    by_port: dict[int, list[str]] = {}
    for listener in listeners:
        if listener.port:
            by_port.setdefault(listener.port, []).append(listener.flag)
    return "; ".join(f"{' and '.join(flags)} ({port})" for port, flags in by_port.items() if len(flags) > 1)
