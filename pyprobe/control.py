"""The control socket (-c PATH): softflowctl's commands, asked of a running probe.

A unix stream socket, mode 0600. A client sends one line, ``COMMAND [ARGS] [--json]``,
reads the answer (text, or one JSON document with --json) until the server closes.
An answer that starts with ``error:`` (or, with --json, a JSON object with an
"error" key) is a refusal; the probe keeps running either way.

The probe's main loop calls poll() once per batch (at least every 100 ms when
capturing live). poll() never waits on a client for long: a request line that is
not complete yet waits for the next poll, and is dropped after REQUEST_TIMEOUT.
"""

import contextlib
import io
import json
import os
import select
import socket
import stat
import time

from ._meter import DEFAULT_TIMEOUTS
from .ctl import COMMANDS, MAX_REQUEST, TOP_BY
from .errors import ControlError, SettingsError
from .fields import RECORD_SIZE
from .logs import logger
from .output import TableWriter, own_fields
from .records import to_json_lines, unpack
from .parsers import parse_timeouts, whole_number
from .summary import interface_lines

log = logger("pyprobe")

REQUEST_TIMEOUT = 2.0         # seconds a client may take to send its line
FIRST_WAIT = 0.005            # seconds poll() waits for the lines of the clients it just accepted
SEND_TIMEOUT = 5.0            # seconds an answer may go without progress (a client that stops reading)
TOO_LONG = b"(a request past MAX_REQUEST)"
MAX_ACCEPT = 64               # connections accepted per poll
MAX_WAITING = 64              # clients waiting for their line; beyond, the longest-waiting is dropped
SEND_BUDGET = 1 << 20         # bytes sent per poll, so a large answer never stalls the meter
DUMP_CHUNK = 8192             # flows formatted at a time by dump-flows


class _Client:
    """A connection: first its request line comes in, then its answer goes out, a piece per poll."""

    def __init__(self, conn):
        self.conn = conn
        self.data = b""
        self.deadline = time.monotonic() + REQUEST_TIMEOUT
        self.answer = None        # an iterator of str pieces, once the request is read
        self.pending = b""        # of the piece being sent


class ControlServer:
    """Listens on a unix socket and answers control commands between two batches."""

    def __init__(self, path, probe):
        self.path = path
        self.probe = probe
        self.clients = []
        self.sock = None
        self._remove_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(path)
            os.chmod(path, 0o600)
            sock.listen(socket.SOMAXCONN)
        except OSError as e:
            sock.close()
            raise SettingsError(f"cannot listen on control socket {path}: {e.strerror or e}") from None
        finally:
            os.umask(old_umask)
        sock.setblocking(False)
        self.sock = sock
        self._inode = os.stat(path).st_ino
        probe.pollers.append(self.poll)

    @staticmethod
    def _remove_stale(path):
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        except OSError as e:
            raise SettingsError(f"control socket {path}: {e.strerror}") from None
        if not stat.S_ISSOCK(mode):
            raise SettingsError(f"control socket {path}: exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(path)
        except OSError:
            pass                            # nobody listens: a leftover of an earlier run
        else:
            raise SettingsError(f"control socket {path}: another process is listening on it")
        finally:
            probe.close()
        try:
            os.unlink(path)
        except OSError as e:
            raise SettingsError(f"cannot remove stale control socket {path}: {e.strerror}") from None

    # -- serving ----------------------------------------------------------------

    def poll(self):
        """Accept what is pending, answer complete requests, send a piece of each answer;
        never wait long on anyone."""
        if self.sock is None:
            return
        accepted = self._accept()
        if accepted:                # a client usually sends its line right after connecting
            with contextlib.suppress(OSError, ValueError):
                select.select([c.conn for c in accepted], [], [], FIRST_WAIT)
        now = time.monotonic()
        kept = []
        for client in self.clients:
            if client.answer is None:
                line = self._read(client)
                if line is not None:
                    client.answer = self._answer(line)
                    client.deadline = now + SEND_TIMEOUT
                elif now > client.deadline:
                    log.debug("control socket: a client sent no request in time")
                    client.conn.close()
                    continue
            if client.answer is not None and not self._send(client, now):
                client.conn.close()
                continue
            kept.append(client)
        self.clients = self._bounded(kept)

    def _accept(self):
        accepted = []
        for _ in range(MAX_ACCEPT):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                log.debug("control socket: accept failed: %s", e)
                break
            conn.setblocking(False)
            accepted.append(_Client(conn))
        self.clients += accepted
        return accepted

    @staticmethod
    def _bounded(clients):
        """At most MAX_WAITING clients still to send their line: idle connections cannot lock
        a real client out; the ones waiting longest go first."""
        waiting = [c for c in clients if c.answer is None]
        if len(waiting) <= MAX_WAITING:
            return clients
        dropped = set(map(id, sorted(waiting, key=lambda c: c.deadline)[:len(waiting) - MAX_WAITING]))
        for c in clients:
            if id(c) in dropped:
                c.conn.close()
        log.debug("control socket: %d idle clients dropped", len(dropped))
        return [c for c in clients if id(c) not in dropped]

    @staticmethod
    def _read(client):
        """The request line if complete (or the client stopped sending), else None."""
        while True:
            try:
                chunk = client.conn.recv(MAX_REQUEST)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError:
                return b""
            client.data += chunk
            if not chunk or b"\n" in client.data[:MAX_REQUEST + 1]:
                return client.data.split(b"\n", 1)[0]
            if len(client.data) > MAX_REQUEST:
                return TOO_LONG

    def _answer(self, line):
        if line is TOO_LONG:
            return iter([_refusal(f"a request is one line of at most {MAX_REQUEST} bytes", False)])
        answer = self.handle(line.decode("utf-8", "replace"))
        return iter([answer]) if isinstance(answer, str) else answer

    @staticmethod
    def _send(client, now):
        """Send what the socket takes now, up to SEND_BUDGET; False when the answer is all
        sent, or the client is gone or stopped reading."""
        budget = SEND_BUDGET
        while budget > 0:
            if not client.pending:
                try:
                    piece = next(client.answer, None)
                except Exception:      # (a piece made as it is sent: the probe outlives its failure)
                    log.exception("control socket: an answer failed part way")
                    return False
                if piece is None:
                    return False
                client.pending = piece.encode()
            try:
                sent = client.conn.send(client.pending[:budget])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                log.debug("control socket: cannot answer: %s", e)
                return False
            client.pending = client.pending[sent:]
            budget -= sent
            client.deadline = now + SEND_TIMEOUT
        if now > client.deadline:
            log.debug("control socket: a client stopped reading its answer")
            return False
        return True

    def handle(self, line):
        """One request line -> the answer: text ending in a newline, or (a large answer) an
        iterator of its pieces."""
        words = line.split()
        as_json = "--json" in words
        words = [w for w in words if w != "--json"]
        try:
            if not words:
                raise ControlError(f"no command (one of {', '.join(COMMANDS)})")
            command, args = words[0].lower(), words[1:]
            handler = HANDLERS.get(command)
            if handler is None:
                raise ControlError(f"unknown command {command!r} (one of {', '.join(COMMANDS)})")
            log.debug("control socket: %s", line.strip())
            if args and not COMMANDS[command].arguments:
                raise ControlError(f"{command} takes no arguments")
            text, data = handler(self, args)
        except ControlError as e:
            return _refusal(str(e), as_json)
        except Exception as e:      # no request, however malformed, may end the probe and its flows
            log.exception("control socket: %r failed", line.strip()[:200])
            return _refusal(f"internal error ({type(e).__name__}); the probe runs on, see its log", as_json)
        if as_json:
            return data if _pieces(data) or isinstance(data, str) else json.dumps(data) + "\n"
        return text if _pieces(text) or text.endswith("\n") else text + "\n"

    # -- the commands: each returns (text answer, JSON-able answer); either may be an
    # -- iterator of str pieces, made as the answer is sent ------------------------

    def _statistics(self, args):
        return self.probe.summary(), self.probe.statistics()

    def _dump_flows(self, args):
        """The flows as they stand now, formatted DUMP_CHUNK at a time as the answer is sent."""
        flows = self.probe.dump_flows()
        count = len(flows) // RECORD_SIZE
        step = DUMP_CHUNK * RECORD_SIZE

        def text():
            table = io.StringIO()
            writer = TableWriter(table)          # one writer: a column a chunk widened stays wide
            for start in range(0, len(flows) or 1, step):         # (no flows: the heading alone)
                writer.write(flows[start:start + step])
                yield table.getvalue()
                table.seek(0)
                table.truncate()
            yield f"{count} active flow{'s' if count != 1 else ''}\n"

        def document():                  # one JSON document, one flow per line, each like a --json record
            yield "["
            for start in range(0, len(flows), step):
                lines = to_json_lines(flows[start:start + step]).decode().rstrip("\n")
                yield ("\n" if start == 0 else ",\n") + lines.replace("\n", ",\n")
            yield "\n]\n"
        return text(), document()

    def _top(self, args):
        """top [N] [by=octets|packets|flows] [monitor=NAME]: the largest active flows of a monitor
        now (or, by flows, the sources with the most active flows)."""
        n, by, name = TOP_DEFAULT, "octets", None
        for arg in args:
            key, sep, value = arg.partition("=")
            if not sep and 0 < (whole_number(key) or 0) <= TOP_MOST:
                n = int(key)
            elif key == "by" and value in TOP_BY:
                by = value
            elif key == "monitor" and value:
                name = value
            else:
                raise ControlError(f"top: bad argument {arg!r} (top [N up to {TOP_MOST}] [by={'|'.join(TOP_BY)}] "
                                   "[monitor=NAME])")
        monitor = self.probe.monitor(name)
        active = monitor.meter.active_flows
        title = (f"top {n} {'sources by active flows' if by == 'flows' else 'flows by ' + by}"
                 + (f" of monitor {monitor.name}" if monitor.name else "") + f", of {active:,} active flows\n")
        if by == "flows":
            if monitor.sinks.record.route_as:
                raise ControlError(f"top by=flows counts the flows of each source address: record "
                                   f"{monitor.sinks.record.name!r} keys on AS numbers instead")
            rows = top_sources(monitor.meter.snapshot(), monitor.meter.stride, n)
            return (title + "".join(f"{src:>39}  {flows:>8} flows  {packets:>12} packets  {octets:>14} octets\n"
                                    for src, flows, packets, octets in rows),
                    [{"src": src, "flows": flows, "packets": packets, "octets": octets}
                     for src, flows, packets, octets in rows])
        flows = monitor.meter.top(n, by)
        if monitor.sinks.dating:
            flows = monitor.sinks.dating.dated_records(flows, monitor.meter.stride)
        table = io.StringIO()
        TableWriter(table, record=monitor.sinks.record, stride=monitor.meter.stride).write(flows)
        return title + table.getvalue(), json.loads("[" + to_json_lines(flows, own_fields(monitor.sinks.record),
                                                                        monitor.meter.stride)
                                                    .decode().strip()
                                                    .replace("\n", ",") + "]")

    def _interfaces(self, args):
        rows = self.probe.source.statistics().get("interfaces")
        if rows is None:
            return f"no interfaces: reading {self.probe.source.path}", []
        return "\n".join(interface_lines(rows)), rows

    def _expire_all(self, args):
        count = self.probe.expire_all()
        return f"expired {count} flow{'s' if count != 1 else ''}", {"expired": count}

    def _delete_all(self, args):
        count = self.probe.delete_all()
        return f"deleted {count} flow{'s' if count != 1 else ''}", {"deleted": count}

    def _timeouts(self, args):
        """timeouts [monitor=NAME] [NAME=SECONDS ...]: each change applied to that monitor's
        own timeouts, or to every monitor's; the answer shows each monitor concerned."""
        named = [a.partition("=")[2] for a in args if a.startswith("monitor=")]
        changes_given = [a for a in args if not a.startswith("monitor=")]
        if len(named) > 1 or (named and not named[0]):
            raise ControlError("timeouts: give monitor=NAME once")
        monitors = [self.probe.monitor(named[0])] if named else self.probe.monitors
        notes = []
        if changes_given:
            try:
                changes = parse_timeouts(changes_given)
            except ValueError as e:
                raise ControlError(str(e)) from None
            notes = [w for w in (m.set_timeouts({**m.timeouts, **changes}) for m in monitors) if w]
            whose = (f"monitor {monitors[0].name}" if named else
                     "every monitor" if len(self.probe.monitors) > 1 else "")
            log.info("control socket: timeouts set%s: %s", f" for {whose}" if whose else "", " ".join(changes_given))
            if len(self.probe.monitors) > 1:
                notes.append(f"set for {whose}")
        shown = {m.name: dict(DEFAULT_TIMEOUTS, **m.timeouts) for m in monitors}
        if len(shown) == 1:
            (name, current), = shown.items()
            text = _timeout_lines(current)
            data = current
        else:
            text = "".join(f"monitor {name}:\n" + _timeout_lines(current, "  ") for name, current in shown.items())
            data = {"monitors": shown}
        return text + "".join(f"note: {n}\n" for n in dict.fromkeys(notes)), data

    def _send_template(self, args):
        self.probe.send_templates()
        return "ok", {"ok": True}

    def _shutdown(self, args):
        log.info("control socket: shutdown requested: expiring every flow")
        self.probe.stop()
        return "ok", {"ok": True}

    # -- the end ------------------------------------------------------------------

    def close(self):
        """Stop listening, drop waiting clients, remove the socket file (if it is still ours)."""
        for client in self.clients:
            client.conn.close()
        self.clients = []
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        with contextlib.suppress(ValueError):
            self.probe.pollers.remove(self.poll)


# Each command answered by the method ctl's table names: one it names that is not here fails
# at import, not at the first request.
HANDLERS = {name: getattr(ControlServer, command.handler) for name, command in COMMANDS.items()}
TOP_DEFAULT = 10
TOP_MOST = 10000


def _timeout_lines(timeouts, indent=""):
    return "".join(f"{indent}{name:<10} {seconds:g}\n" for name, seconds in timeouts.items())


def _refusal(message, as_json):
    return json.dumps({"error": message}) + "\n" if as_json else f"error: {message}\n"


def top_sources(packed, stride, n):
    """[(source address, active flows, packets, octets)] of the n sources with the most flows."""
    per = {}
    for r in unpack(packed, stride):
        t = per.setdefault(r.src, [0, 0, 0])
        t[0] += 1
        t[1] += r.packets
        t[2] += r.octets
    return sorted(((src, *t) for src, t in per.items()), key=lambda row: (-row[1], -row[3], row[0]))[:n]


def _pieces(answer):
    return hasattr(answer, "__next__")
