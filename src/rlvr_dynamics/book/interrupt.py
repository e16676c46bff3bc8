"""Ctrl-C for ``rlvr-book``: one line and exit code 130, whenever it comes.

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
the one line last and exits with 130.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)
CHILD_GRACE_S = 10.0  # how long a stopped child may take to exit before SIGKILL

_requested = threading.Event()
_armed = threading.Event()


def requested() -> bool:
    """Whether Ctrl-C has been pressed since :func:`install`."""
    return _requested.is_set()


def install():
    """Handle SIGINT as described above; returns the previous handler (None off the main thread,
    where signal handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    _requested.clear()
    _armed.clear()
    return signal.signal(signal.SIGINT, _on_sigint)


def arm() -> None:
    """From now on Ctrl-C may raise KeyboardInterrupt here; raise it now if it came meanwhile."""
    _armed.set()
    if _requested.is_set():
        raise KeyboardInterrupt


def restore(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


def _on_sigint(signum, frame) -> None:
    if _requested.is_set():
        return  # already unwinding
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
    """Stop and wait for the children (so none prints after this), print ``message`` as the last
    line on stderr, and return 130 — or, for the console script, exit with it at once: a finished
    interpreter would still run the event loop's finalizers, which report the tasks the interrupt
    cut short."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_children(wait=True)
    print(message, file=sys.stderr)
    if exit_process:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(INTERRUPTED)
    return INTERRUPTED
