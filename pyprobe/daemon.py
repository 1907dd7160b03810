"""A probe's life as a process: signals, pid file, control socket, metrics, privilege
drop, reload, and the statistics at the end. serve() runs one probe to its end."""

import contextlib
import os
import pwd
import signal
import sys

from . import settings as settings_module
from .errors import SettingsError
from .logs import logger, prepare as prepare_logs
from .probe import Probe

log = logger("pyprobe")


def install_signal_handlers(probe):
    """SIGINT/SIGTERM: stop reading, expire every flow, report. SIGHUP: re-read the settings.
    SIGUSR1: resend templates."""
    def stop(signum, frame):
        # (logged by the run loop, not here: a handler may run inside the first import of logging)
        probe.stop(by="a signal")

    def reload(signum, frame):
        probe.reload_requested = True

    for sig, handler in ((signal.SIGINT, stop), (signal.SIGTERM, stop), (signal.SIGHUP, reload),
                         (signal.SIGUSR1, lambda signum, frame: probe.send_templates())):
        signal.signal(sig, handler)
        # Restart system calls a signal interrupts inside libpcap, which would report EINTR as a failure.
        signal.siginterrupt(sig, False)


def write_pidfile(path):
    try:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as e:
        raise SettingsError(f"-p: cannot write pid file {path}: {e.strerror}") from None


def remove_pidfile(path):
    with contextlib.suppress(OSError):
        os.unlink(path)


def drop_privileges(user, owned_paths=()):
    """Become `user` for good: supplementary groups, group, then user (which clears every capability).
    Files we made as root for later use (the control socket) are handed over first."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise SettingsError(f"--user: no such user: {user}") from None
    prepare_logs()                         # (what is imported later is read as the user)
    try:
        for path in owned_paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except PermissionError:
        raise SettingsError(f"--user: cannot become {user}: pyprobe is not running as root") from None
    log.info("running as %s", user)


def reload_settings(probe, argv, adjust):
    """SIGHUP: read the flags and the config file again; new timeouts and collectors, same
    cache. adjust: what a worker changes in every settings it runs with."""
    try:
        probe.apply(adjust(settings_module.parse(argv)))
    except SettingsError as e:
        log.error("reload failed, keeping the running settings: %s", e)
        return
    except Exception as e:          # whatever a reload trips on, the running probe and its flows go on
        log.exception("reload failed, keeping the running settings: %s: %s", type(e).__name__, e)
        return
    log.warning("configuration reloaded")


def serve(settings, argv, fanout_group=None, title=None, adjust=lambda s: s):
    """Run one probe until its input ends or it is stopped; its exit status."""
    probe = Probe(settings, fanout_group)
    probe.reload = lambda: reload_settings(probe, argv, adjust)
    if settings.pidfile:
        write_pidfile(settings.pidfile)
    install_signal_handlers(probe)
    services = []
    try:
        if settings.control:
            from .control import ControlServer
            services.append(ControlServer(settings.control, probe))
        if settings.metrics:
            from .metrics import MetricsServer
            services.append(MetricsServer(settings.metrics, probe))
        if settings.user:
            drop_privileges(settings.user, [settings.control] if settings.control else [])
        probe.run()
    finally:
        for service in services:
            service.close()
        if settings.pidfile:
            remove_pidfile(settings.pidfile)
    if not settings.quiet:
        print(probe.summary(title), file=sys.stderr, flush=True)
    if probe.source.truncated and probe.meter.stats()["packets_read"] == 0:
        log.error("%s: no packet could be read", probe.source.path)
        return 2
    return 0
