"""Ctrl-C, SIGTERM and SIGHUP for ``rlvr-book``: one line and the conventional exit code (128 + the
signal's number: 130, 143, 129), whenever they come.

SIGTERM (what ``kill``, ``timeout`` and a cancelled CI job send) and SIGHUP (a closed terminal) are
handled exactly like Ctrl-C, described here for SIGINT.

papermill starts each kernel in a session of its own, so a terminal's Ctrl-C reaches only
``rlvr-book`` (and its other children, such as the Sphinx build). Left to Python's default
handler, the KeyboardInterrupt lands at a random point: inside nbclient's event loop it can be
swallowed (the run then completes), turn into a ``DeadKernelError`` traceback, or leave the
kernel printing after ``rlvr-book`` has said it stopped; inside torch's import it aborts the
process (a C++ ``terminate``). So the first Ctrl-C

- stops every child process group with SIGTERM — a kernel holds SIGTERM back while it writes a
  result (:func:`rlvr_dynamics.files.write_files_atomic`), so every file stays whole — and the
  library waiting on that child then fails in its ordinary way;
- is remembered (:func:`requested`), so that failure, or a library swallowing the interrupt,
  still ends as an interruption;
- raises KeyboardInterrupt only when no child was running and the process is :func:`arm`-ed,
  i.e. past its heavy imports (before that, :func:`arm` raises it once they are done);

and later ones are ignored while the run unwinds. :func:`finish` waits for the children, prints
the one line last and exits with 128 + the signal's number, after removing every scratch folder
registered with :func:`scratch_folder` (a thread still unwinding may not have removed its own yet).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
CHILD_GRACE_S = 10.0  # how long a stopped child may take to exit before SIGKILL

_requested = threading.Event()
_armed = threading.Event()
_received: list[int] = []  # the first stop signal, once one came
_scratch: set[Path] = set()
_scratch_lock = threading.Lock()


def requested() -> bool:
    """Whether a stop signal (Ctrl-C, SIGTERM, SIGHUP) has come since :func:`install`."""
    return _requested.is_set()


def exit_code() -> int:
    """128 + the number of the signal that stopped the run (130 for Ctrl-C)."""
    return 128 + (_received[0] if _received else signal.SIGINT)


def how() -> str:
    """How the run was stopped, for its one line: ``"interrupted"`` (Ctrl-C) or ``"stopped by SIGTERM"``."""
    if not _received or _received[0] == signal.SIGINT:
        return "interrupted"
    return f"stopped by {signal.Signals(_received[0]).name}"


def install() -> dict:
    """Handle the stop signals as described above; returns the previous handlers (empty off the main
    thread, where signal handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    _requested.clear()
    _armed.clear()
    _received.clear()
    return {number: signal.signal(number, _on_stop_signal) for number in STOP_SIGNALS}


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder removed when the block ends — and by :func:`finish` if a stop signal ends the
    process while a worker thread is still inside the block."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    with _scratch_lock:
        _scratch.add(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        with _scratch_lock:
            _scratch.discard(path)


def arm() -> None:
    """From now on Ctrl-C may raise KeyboardInterrupt here; raise it now if it came meanwhile."""
    _armed.set()
    if _requested.is_set():
        raise KeyboardInterrupt


def restore(previous) -> None:
    """Put back the handlers :func:`install` returned; a single handler (e.g. ``SIG_IGN``) for every stop signal."""
    if threading.current_thread() is not threading.main_thread():
        return
    for number in STOP_SIGNALS:
        handler = previous.get(number) if isinstance(previous, dict) else previous
        if handler is not None:
            signal.signal(number, handler)


def _on_stop_signal(signum, frame) -> None:
    if _requested.is_set():
        return  # already unwinding
    _received.append(signum)
    _requested.set()
    if not stop_children(wait=False) and _armed.is_set():
        raise KeyboardInterrupt


def _children():
    import psutil

    try:
        return psutil.Process().children(recursive=False)
    except psutil.Error:
        return []


def stop_children(wait: bool = True, grace_s: float = CHILD_GRACE_S) -> int:
    """SIGTERM each child's process group when it leads one (a kernel and anything it started),
    else the child; with ``wait``, SIGKILL whatever is still there after ``grace_s`` seconds.
    Returns how many children there were."""
    import psutil

    children = _children()
    for child in children:
        try:
            if os.getpgid(child.pid) == child.pid:
                os.killpg(child.pid, signal.SIGTERM)
            else:
                child.terminate()
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass  # it ended on its own meanwhile
    if wait:
        _, alive = psutil.wait_procs(children, timeout=grace_s)
        for child in alive:
            with contextlib.suppress(psutil.Error):  # it ended meanwhile
                child.kill()
        psutil.wait_procs(alive, timeout=grace_s)
    return len(children)


def finish(message: str, exit_process: bool) -> int:
    """Stop and wait for the children (so none prints after this), remove the scratch folders, print
    ``message`` as the last line on stderr, and return :func:`exit_code` — or, for the console script,
    exit with it at once: a finished interpreter would still run the event loop's finalizers, which
    report the tasks the interrupt cut short."""
    restore(signal.SIG_IGN)
    stop_children(wait=True)
    with _scratch_lock:
        for path in list(_scratch):
            shutil.rmtree(path, ignore_errors=True)
    code = exit_code()
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        print(message, file=sys.stderr)
        sys.stderr.flush()
    if exit_process:
        with contextlib.suppress(OSError):
            sys.stdout.flush()
        os._exit(code)
    return code
