"""--workers N: N probe processes in one kernel PACKET_FANOUT hash group.

Both directions of a flow always reach the same worker. Each worker is its own
exporting process: observation domain / v9 source id / v5 engine id = the
configured one + its index, so sequence numbers stay exact per domain."""

import contextlib
import os
import signal
import sys

from .daemon import remove_pidfile, serve, write_pidfile
from .errors import InputError, SettingsError, one_line
from .logs import logger

log = logger("pyprobe")

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)


def worker_settings(settings, index):
    """What worker `index` runs with (also applied to every reload)."""
    return settings._replace(pidfile=None, workers=1, source_id=settings.source_id + index,
                               engine_id=(settings.engine_id + index) & 0xff)


def run_workers(settings, argv):
    """Fork the workers; forward signals to them; exit with the worst status."""
    parent = os.getpid()
    group = parent & 0xffff
    sys.stdout.reconfigure(line_buffering=True)     # whole JSON lines from every worker
    children = []
    stopping = []

    def forward(signum, frame):
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping.append(signum)                  # (no more workers are started)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    # Before the first fork: a signal while the workers start reaches those forked so far,
    # instead of ending the parent by its default action and orphaning them. Each fork runs
    # with the signals held, so a new worker never runs the parent's handler.
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    for index in range(settings.workers):
        if stopping:
            break
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
        pid = os.fork()
        if pid == 0:
            _run_worker(settings, argv, parent, group, index)     # (never returns)
        children.append(pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    if settings.pidfile:
        write_pidfile(settings.pidfile)
    status = 0
    for child in children:
        while True:
            try:
                _, code = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        status = max(status, os.waitstatus_to_exitcode(code))
    if settings.pidfile:
        remove_pidfile(settings.pidfile)
    return status


def _run_worker(settings, argv, parent, group, index):
    """The life of worker `index`, ended by os._exit with its status (what failed said first)."""
    status = 1
    try:
        _become_worker(parent)

        def adjust(reloaded):
            return worker_settings(reloaded, index)
        status = serve(adjust(settings), argv, fanout_group=group, title=f"worker {index}", adjust=adjust)
    except (SettingsError, InputError) as e:
        print(f"pyprobe: worker {index}: {one_line(e)}", file=sys.stderr)
        status = 2
    except BrokenPipeError:
        status = 0
    except BaseException:
        log.exception("worker %d failed", index)
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


PR_SET_PDEATHSIG = 1


def _become_worker(parent):
    """In a new worker: SIGTERM when the parent dies, however it dies (no orphan captures on);
    until the probe's own handlers are in place, a reload or template request is nothing to do
    yet, and a stop stops it (it holds no flow yet)."""
    import ctypes
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN if sig in (signal.SIGHUP, signal.SIGUSR1) else signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:             # (it died before prctl took effect)
        os._exit(0)
