"""The probe's log lines go through Python's logging, set up when the first line is
logged: a run that logs nothing (the usual capture file) never imports logging, which
is a tenth of a start. Modules take their logger with logger(name); the command line
says how lines go out (configure), and they go out so from the first.
"""

from .errors import SettingsError

SYSLOG_SOCKET = "/dev/log"

_wanted = {"debug": False, "syslog": False}
_logging = None                    # the logging module, once a line needed it


def configure(debug=None, syslog=None):
    """Lines to stderr as 'pyprobe: message' (the default) or to syslog; debug: every line.
    SettingsError if syslog is asked for and the system log cannot be reached."""
    if syslog:
        _check_syslog()
    for key, value in (("debug", debug), ("syslog", syslog)):
        if value is not None:
            _wanted[key] = value
    if _logging is not None:
        _apply()


def prepare():
    """Set logging up now: a process about to give up root (--user) may no longer be able
    to read the Python library (an interpreter under /root, say) when its first line comes."""
    _module()


def _check_syslog():
    import socket
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(SYSLOG_SOCKET)
    except OSError as e:
        raise SettingsError(f"--syslog: cannot reach the system log at {SYSLOG_SOCKET}: "
                            f"{e.strerror or e}") from None
    finally:
        probe.close()


def _module():
    global _logging
    if _logging is None:
        import logging
        _logging = logging
        _apply()
    return _logging


def _apply():
    logging = _logging
    logging.raiseExceptions = False    # a log line that cannot go out (syslog restarting) is dropped
    root = logging.getLogger()
    if _wanted["syslog"]:
        import logging.handlers
        for handler in list(root.handlers):
            root.removeHandler(handler)
        handler = logging.handlers.SysLogHandler(address=SYSLOG_SOCKET, facility="daemon")
        handler.setFormatter(logging.Formatter("pyprobe[%(process)d]: %(message)s"))
        root.addHandler(handler)
    else:
        logging.basicConfig(format="pyprobe: %(message)s")
    root.setLevel(logging.DEBUG if _wanted["debug"] else logging.WARNING)


class Logger:
    """A logging.Logger of this name, fetched (and logging set up) on its first use."""

    __slots__ = ("name", "_logger")

    def __init__(self, name):
        self.name = name
        self._logger = None

    def __getattr__(self, attr):          # debug, info, warning, error, isEnabledFor, ...
        if self._logger is None:
            self._logger = _module().getLogger(self.name)
        return getattr(self._logger, attr)


def logger(name):
    return Logger(name)
