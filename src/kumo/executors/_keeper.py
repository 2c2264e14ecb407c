"""The keeper: the small parent of every local worker, so that its exit code is recorded in a file.

The local executor starts ``python -I -S _keeper.py [--ready-fd N] <exit-file> -- <command...>``
in a new session (the keeper is its process-group leader) instead of the command itself::

    controller ── keeper (pgid = its pid) ── the command (same process group) ── its children

- It starts the command as its child, in its own process group, with the environment it was
  given (read back from ``/proc/self/environ``: Python's start-up may have added ``LC_CTYPE``),
  its working directory, stdin and stdout/stderr (the worker's log).
- SIGTERM, SIGINT and SIGHUP reach the whole group; the keeper has a no-op handler for them
  (a handler, not SIG_IGN: handlers are reset by exec, ignored signals are inherited), so a
  group SIGTERM stops the command and leaves the keeper to record how it ended.
- On SIGUSR1 it SIGKILLs every other process of its group (found in ``/proc``; else its child):
  the executor's escalation after a grace, which leaves no zombie since the keeper reaps its child.
- When the command has ended it SIGKILLs what the command left in the group, writes the exit code
  (``-N``: killed by signal N) atomically to the exit file, and ends the same way: ``exit(code)``,
  or killed by signal N, so that its own parent sees what it would have seen of the command.
- If the command cannot be started it writes ``kumo: command not found: X`` (or ``permission
  denied``, ...) to the log and exits 127 (126): the shell's convention.
- ``--ready-fd N``: a pipe to the executor, which waits for ``ok <pid>`` (or ``<code> <message>``
  when the command could not be started) before it calls the gang started.

It imports nothing but the standard library, so that it starts fast (``-I -S``). A restarted
controller, which is not the keeper's parent, learns the exit code from the file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

_SHIELDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_KILL_ROUNDS = 20  # rounds of looking for the group's processes after SIGUSR1, 10 ms apart


class _State:
    child: int | None = None  # the command's pid, once started
    killing = False  # SIGUSR1 came: kill the command as soon as it exists


def _ignore(signum: int, frame: object) -> None:
    """Survive a signal sent to the whole group; the command gets its default action."""


def _group_members() -> list[int] | None:
    """The live processes of this process group but the keeper itself; None without ``/proc``."""
    me, pgid = os.getpid(), os.getpgrp()
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    found = []
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
            fields = data[data.rindex(b")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                found.append(int(name))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _kill_group() -> None:
    """SIGKILL every other process of the group, again until none is left (or the rounds are over)."""
    for i in range(_KILL_ROUNDS):
        members = _group_members()
        if members is None:  # no /proc: the child is all we know
            if _State.child is not None:
                _kill(_State.child)
            return
        if not members:
            return
        for pid in members:
            _kill(pid)
        if i + 1 < _KILL_ROUNDS:
            time.sleep(0.01)


def _on_usr1(signum: int, frame: object) -> None:
    _State.killing = True
    _kill_group()
    if _State.child is not None:
        _kill(_State.child)


def _environment() -> dict[bytes, bytes] | None:
    """The environment this process was started with (Python may have changed ``os.environ``)."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    env = {}
    for entry in raw.split(b"\0"):
        key, eq, value = entry.partition(b"=")
        if eq and key:
            env[key] = value
    return env


def _start_failure(error: OSError, program: str) -> tuple[int, str]:
    """As the shell says it (and as the executor says a failure to start the keeper)."""
    if isinstance(error, FileNotFoundError):
        return 127, f"command not found: {program}"
    if isinstance(error, PermissionError):
        return 126, f"permission denied: {program}"
    return 126, f"cannot start {program}: {error.strerror or error}"


def _write_exit_file(path: str, code: int) -> None:
    tmp = path + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"{code}\n".encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        _say(f"kumo: cannot write the exit file {path}: {e.strerror or e}")


def _say(line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode(errors="replace"))


def _answer(fd: int | None, text: str) -> None:
    if fd is None:
        return
    try:
        os.write(fd, text.encode(errors="replace"))
    except OSError:
        pass  # the executor is gone; carry on
    finally:
        os.close(fd)


def _end_like(code: int) -> None:
    """Exit as the command did: with its code, or killed by the same signal."""
    if code >= 0:
        os._exit(code & 0xFF)
    sig = -code
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    except (ImportError, OSError, ValueError):
        pass  # the keeper's own core dump is harmless, only useless
    if sig not in (signal.SIGKILL, signal.SIGSTOP):
        try:
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        except (OSError, ValueError):
            pass
    os.kill(os.getpid(), sig)
    time.sleep(1)  # the signal is delivered before this returns; in case it is not:
    os._exit(128 + sig)


def _parse(argv: list[str]) -> tuple[str, int | None, list[str]]:
    ready: int | None = None
    if argv[:1] == ["--ready-fd"] and len(argv) > 1:
        ready, argv = int(argv[1]), argv[2:]
    if len(argv) < 3 or argv[1] != "--":
        raise ValueError("usage: _keeper.py [--ready-fd N] <exit-file> -- <command...>")
    return argv[0], ready, argv[2:]


def main(argv: list[str]) -> None:
    # first of all, before anything can be signalled: keep what was ignored ignored (the command
    # inherits that, as it would without the keeper)
    for sig in _SHIELDED:
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, _ignore)
    signal.signal(signal.SIGUSR1, _on_usr1)
    try:
        exit_file, ready, command = _parse(argv)
    except ValueError as e:
        _say(f"kumo keeper: {e}")
        os._exit(2)

    import subprocess

    try:
        child = subprocess.Popen(command, env=_environment(), close_fds=True)
    except OSError as e:
        code, message = _start_failure(e, command[0])
        _say(f"kumo: {message}")
        _write_exit_file(exit_file, code)
        _answer(ready, f"{code} {message}")
        os._exit(code)
    _State.child = child.pid
    if _State.killing:  # SIGUSR1 came while the command was being started
        _kill(child.pid)
    _answer(ready, f"ok {child.pid}")

    while True:
        try:
            _, status = os.waitpid(child.pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    _State.child = None
    _kill_group()  # whatever the command left in the group
    _write_exit_file(exit_file, code)
    _end_like(code)


if __name__ == "__main__":
    main(sys.argv[1:])
