"""--workers N: N probe processes in one kernel PACKET_FANOUT hash group.

Both directions of a flow always reach the same worker. Each worker is its own
exporting process: observation domain / v9 source id / v5 engine id = the
configured one + its index, so sequence numbers stay exact per domain."""

import contextlib
import os
import signal
import sys

from .daemon import remove_pidfile, serve, write_pidfile

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

    def forward(signum, frame):
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    # Before the first fork: a signal while the workers start reaches those forked so far,
    # instead of ending the parent by its default action and orphaning them.
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    for index in range(settings.workers):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                _become_worker(parent)
                def adjust(reloaded, index=index):
                    return worker_settings(reloaded, index)
                status = serve(adjust(settings), argv, fanout_group=group, title=f"worker {index}", adjust=adjust)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        children.append(pid)
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


PR_SET_PDEATHSIG = 1


def _become_worker(parent):
    """In a new worker: SIGTERM when the parent dies, however it dies (no orphan captures on);
    until the probe's own handlers are in place, a reload or template request is nothing to do
    yet, and a stop stops it (it holds no flow yet)."""
    import ctypes
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN if sig in (signal.SIGHUP, signal.SIGUSR1) else signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:             # (it died before prctl took effect)
        os._exit(0)
