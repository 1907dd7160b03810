"""pyprobe ctl: ask a running pyprobe (started with -c PATH) to do something, like softflowctl."""

import argparse
import json
import socket
import sys
import time

COMMANDS = {
    "statistics": "the probe's counters, as in the summary at the end of a run",
    "dump-flows": "the flows active now, one per line",
    "interfaces": "the interfaces captured (ifIndex, direction, packets, octets, drops) and those left out",
    "expire-all": "end every flow now and export its record; says how many",
    "delete-all": "forget every flow without a record; says how many",
    "timeouts": "show the timeouts; 'timeouts NAME=SECONDS ...' sets them (names as for pyprobe -t)",
    "send-template": "send the v9/IPFIX templates to the collectors now",
    "shutdown": "stop capturing, expire and export every flow, exit",
}

DESCRIPTION = """\
Send one command to a running pyprobe started with -c PATH, print its answer."""

EPILOG = "commands:\n" + "".join(f"  {name:<15}{text}\n" for name, text in COMMANDS.items()) + """
examples:
  pyprobe ctl -c /run/pyprobe.ctl statistics
  pyprobe ctl -c /run/pyprobe.ctl dump-flows --json
  pyprobe ctl -c /run/pyprobe.ctl timeouts udp=30 active=10m

exit status:
  0 done; 1 the probe refused the command; 2 bad usage, or the probe cannot be reached.
"""

DEFAULT_TIMEOUT = 30.0


def positive_seconds(text):
    """--timeout: a finite number of seconds above 0."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad timeout {text!r}: seconds") from None
    if not 0 < seconds < 86400 * 365:
        raise argparse.ArgumentTypeError(f"bad timeout {text!r}: more than 0 seconds, less than a year")
    return seconds


def build_parser():
    parser = argparse.ArgumentParser(prog="pyprobe ctl", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", dest="control", metavar="PATH", required=True,
                        help="the probe's control socket (pyprobe -c PATH)")
    parser.add_argument("--json", action="store_true", help="ask for the answer as one JSON document")
    parser.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"wait this long for the answer (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("command", metavar="COMMAND", help="one of the commands below")
    parser.add_argument("args", nargs="*", metavar="ARG", help="the command's arguments (timeouts NAME=SECONDS)")
    return parser


def ask(path, request, timeout=DEFAULT_TIMEOUT):
    """Send one request line, return the whole answer (str). OSError if the probe cannot be
    reached; socket.timeout if it does not answer in time."""
    deadline = time.monotonic() + timeout
    with connect(path, deadline) as sock:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        sock.sendall(request.encode() + b"\n")
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
    args = build_parser().parse_intermixed_args(argv)
    request = " ".join([args.command, *args.args] + (["--json"] if args.json else []))
    if "\n" in request:
        print("pyprobe ctl: a command is one line", file=sys.stderr)
        return 2
    try:
        answer = ask(args.control, request, args.timeout)
    except socket.timeout:
        print(f"pyprobe ctl: no answer from {args.control} within {args.timeout:g} s", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"pyprobe ctl: cannot connect to {args.control}: {e.strerror or e}", file=sys.stderr)
        return 2
    if not answer:
        print(f"pyprobe ctl: {args.control}: the probe closed the connection without an answer",
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
