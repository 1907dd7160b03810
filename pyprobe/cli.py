"""The pyprobe command: parse the settings, run the probe (or its workers), exit."""

import gc
import signal
import sys

from . import settings as settings_module
from .errors import InputError, OutputError, SettingsError, one_line
from .logs import configure, logger

log = logger("pyprobe")


def main(argv=None):
    """The command; returns its exit status. What the run made is frozen as it returns, so
    the interpreter's exit frees it without first traversing it all in a last garbage
    collection (half of the exit's time)."""
    try:
        return _command(sys.argv[1:] if argv is None else argv)
    finally:
        gc.freeze()


def _command(argv):
    if argv[:1] == ["ctl"]:
        from .ctl import main as ctl_main
        return ctl_main(argv[1:])
    if argv[:1] == ["generate"]:
        return _generate(argv[1:])
    # Until a probe's own handlers are in place (daemon.install_signal_handlers), a reload or
    # a template request has nothing to act on: it must not end the process (their default).
    for sig in (signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    try:
        settings = settings_module.parse(argv)
        configure(debug=settings.debug, syslog=settings.syslog)
        from .daemon import serve
        if settings.workers > 1:
            from .workers import run_workers
            return run_workers(settings, argv)
        return serve(settings, argv)
    except settings_module.UsageError as e:
        print(f"pyprobe: {one_line(e)} (see pyprobe --help)", file=sys.stderr)
        return 2
    except (SettingsError, InputError) as e:
        print(f"pyprobe: {one_line(e)}", file=sys.stderr)
        return 2
    except OutputError as e:
        print(f"pyprobe: {one_line(e)}", file=sys.stderr)
        from .output import discard_standard_output
        discard_standard_output()
        return 2
    except BrokenPipeError:
        # The reader of our output went away (pyprobe ... | head): not an error.
        sys.stderr.close()
        return 0


def _generate(argv):
    """pyprobe generate: its settings from the option table, then the generator's run."""
    try:
        settings = settings_module.parse(argv, command="generate")
    except SettingsError as e:
        print(f"pyprobe generate: {one_line(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:                 # (the reader of --help went away: not an error)
        from .output import discard_standard_output
        discard_standard_output()
        return 0
    from .generate.run import main as generate_main
    return generate_main(settings)

