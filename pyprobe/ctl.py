"""pyprobe ctl: ask a running pyprobe (started with -c PATH) to do something, like softflowctl."""

import argparse
import json
import socket
import sys
import time
from collections import namedtuple

from .errors import one_line


class Command(namedtuple("Command", "name arguments options help handler")):
    """A control command, for the client (its parser, its checks and --help, the man page) and
    the server (pyprobe/control.py) alike: its name; its arguments as help writes them (""
    when it takes none); the options of pyprobe ctl that go with it (their parser dests); what
    it does; the method of control.ControlServer that answers it."""

    __slots__ = ()


TOP_BY = ("octets", "packets", "flows")        # what makes a flow large for top (--by, by=)
COMMANDS = {c.name: c for c in (
    Command("statistics", "", (), "the probe's counters, as in the summary at the end of a run", "_statistics"),
    Command("dump-flows", "", (), "the flows active now, one per line", "_dump_flows"),
    Command("top", "[N]", ("by", "watch", "monitor"),
            "the N (default 10) largest active flows now, by --by octets (default) or packets, or the sources "
            "with the most flows (--by flows); --monitor NAME; --watch refreshes it, like top(1)", "_top"),
    Command("interfaces", "", (),
            "the interfaces captured (ifIndex, direction, packets, octets, drops) and those left out", "_interfaces"),
    Command("expire-all", "", (), "end every flow now and export its record; says how many", "_expire_all"),
    Command("delete-all", "", (), "forget every flow without a record; says how many", "_delete_all"),
    Command("timeouts", "[NAME=SECONDS ...]", ("monitor",),
            "show each monitor's timeouts; with NAME=SECONDS, change them in every monitor, or with "
            "--monitor NAME in that one (names as for pyprobe -t)", "_timeouts"),
    Command("send-template", "", (), "send the v9/IPFIX templates to the collectors now", "_send_template"),
    Command("shutdown", "", (), "stop capturing, expire and export every flow, exit", "_shutdown"),
)}


def _command_help(c):
    return f"  {c.name:<15}" + (f"{c.name} {c.arguments}: " if c.arguments else "") + c.help + "\n"


DESCRIPTION = """\
Send one command to a running pyprobe started with -c PATH, print its answer."""

EPILOG = "commands:\n" + "".join(map(_command_help, COMMANDS.values())) + """
examples:
  pyprobe ctl -c /run/pyprobe.ctl statistics
  pyprobe ctl -c /run/pyprobe.ctl dump-flows --json
  pyprobe ctl -c /run/pyprobe.ctl timeouts udp=30 active=10m
  pyprobe ctl -c /run/pyprobe.ctl top 20 --by packets --watch

exit status:
  0 done; 1 the probe refused the command; 2 bad usage, or the probe cannot be reached.
"""

DEFAULT_TIMEOUT = 30.0
MAX_REQUEST = 4096            # bytes in a request line


def positive_seconds(text):
    """--timeout: a finite number of seconds above 0."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad timeout {text!r}: seconds") from None
    if not 0 < seconds < 86400 * 365:
        raise argparse.ArgumentTypeError(f"bad timeout {text!r}: more than 0 seconds, less than a year")
    return seconds


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, as pyprobe's own flags' are."""

    def error(self, message):
        self.exit(2, f"pyprobe ctl: {one_line(message)} (see pyprobe ctl --help)\n")


def build_parser():
    parser = _Parser(prog="pyprobe ctl", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", dest="control", metavar="PATH", required=True,
                        help="the probe's control socket (pyprobe -c PATH)")
    parser.add_argument("--json", action="store_true", help="ask for the answer as one JSON document")
    parser.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"wait this long for the answer (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--by", choices=TOP_BY, help="top: what makes a flow large")
    parser.add_argument("--monitor", metavar="NAME",
                        help="top: the monitor's flows (default the first); timeouts: that monitor's (default every one)")
    parser.add_argument("--watch", nargs="?", const=2.0, type=positive_seconds, metavar="SECONDS",
                        help="top: ask again every SECONDS (default 2) and redraw, until interrupted")
    parser.add_argument("command", metavar="COMMAND", help="one of the commands below")
    parser.add_argument("args", nargs="*", metavar="ARG", help="the command's arguments (" + "; ".join(
        f"{c.name} {c.arguments}" for c in COMMANDS.values() if c.arguments) + ")")
    return parser


OPTIONS_OF_COMMANDS = tuple(dict.fromkeys(dest for c in COMMANDS.values() for dest in c.options))


def _takers(dest):
    return [c.name for c in COMMANDS.values() if dest in c.options]


def options_are_for(dest):
    """'--by and --watch are for top': the options that go with the same commands as `dest`."""
    alike = [f"--{d}" for d in OPTIONS_OF_COMMANDS if _takers(d) == _takers(dest)]
    return f"{' and '.join(alike)} {'are' if len(alike) > 1 else 'is'} for {' and '.join(_takers(dest))}"


def ask(path, request, timeout=DEFAULT_TIMEOUT):
    """Send one request line, return the whole answer (str). OSError if the probe cannot be
    reached; socket.timeout if it does not answer in time."""
    deadline = time.monotonic() + timeout
    with connect(path, deadline) as sock:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        # (an argument that is not UTF-8 goes as the bytes given: the probe refuses it in words)
        sock.sendall(request.encode("utf-8", "surrogateescape") + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def connect(path, deadline):
    """A connection to the probe. While its queue of connections is full (EAGAIN: many
    clients at once) try again, a little later each time, until the deadline."""
    pause = 0.005
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() + pause > deadline:
                raise socket.timeout("the probe's connection queue stayed full") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
        except BaseException:
            sock.close()
            raise


def is_error(answer):
    if answer.startswith("error:"):
        return True
    if answer.startswith('{"error"'):
        try:
            return "error" in json.loads(answer)
        except ValueError:
            return False
    return False


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    for name in ("timeout", "watch"):       # ('--timeout=--' stores [] without calling its type)
        if not isinstance(getattr(args, name), (float, type(None))):
            parser.error(f"argument --{name}: expected seconds")
    top_options = [f"by={args.by}"] * bool(args.by) + [f"monitor={args.monitor}"] * bool(args.monitor)
    if args.command not in COMMANDS:
        parser.error(f"unknown command {args.command!r} (one of {', '.join(COMMANDS)})")
    misplaced = [dest for dest in OPTIONS_OF_COMMANDS if getattr(args, dest) and
                 dest not in COMMANDS[args.command].options]
    if misplaced:
        parser.error(options_are_for(misplaced[0]))
    request = " ".join([args.command, *args.args, *top_options] + (["--json"] if args.json else []))
    if "\n" in request or len(request.encode("utf-8", "surrogateescape")) > MAX_REQUEST:
        print(f"pyprobe ctl: a command is one line of at most {MAX_REQUEST} bytes", file=sys.stderr)
        return 2
    if args.watch:
        return watch(args, request)
    return once(args, request)


def watch(args, request):
    """Ask again every args.watch seconds, each answer drawn over the last (like top(1)), until
    interrupted or the probe goes away."""
    try:
        while True:
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")
            status = once(args, request)
            if status != 0:
                return status
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def once(args, request):
    """Ask once, print the answer: the exit status."""
    try:
        answer = ask(args.control, request, args.timeout)
    except socket.timeout:
        print(f"pyprobe ctl: no answer from {one_line(args.control)} within {args.timeout:g} s", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"pyprobe ctl: cannot connect to {one_line(args.control)}: {e.strerror or e}", file=sys.stderr)
        return 2
    if not answer:
        print(f"pyprobe ctl: {one_line(args.control)}: the probe closed the connection without an answer",
              file=sys.stderr)
        return 2
    if is_error(answer):
        if args.json:
            sys.stdout.write(answer)
        else:
            sys.stderr.write("pyprobe ctl: " + answer[len("error:"):].strip() + "\n")
        return 1
    try:
        sys.stdout.write(answer if answer.endswith("\n") else answer + "\n")
        sys.stdout.flush()
    except BrokenPipeError:             # pyprobe ctl ... | head: not an error
        sys.stderr.close()
    return 0
