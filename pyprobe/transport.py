"""Sending export messages to a collector without ever blocking the meter.

Every transport has one interface: send(message) -> bool (False: counted as lost),
send_many(messages) -> how many went, pump() (move queued bytes on; called once per
batch), close(), statistics(), and
`family` and `stream` (True: a byte stream, whose every connection starts afresh).
A transport is made with (name, host, port, peer, source_address=None: the local
address to send from, for a simulated router of its own, multicast_ttl: the hops a
datagram to a multicast group may cross): a stream transport asks its
peer, the collector, for the messages a new connection starts with
(peer.stream_start()) and to number a message for its place in the stream
(peer.renumber(message, counters)).

UDP: a connected, non-blocking socket, a run of messages sent in one compiled call
(sendmmsg, ext/_transport.pyx); a refused or unreachable collector costs a counted
error per message and, at most once a minute, a log line. TCP (IPFIX, RFC 7011
section 10.4): a non-blocking stream with a bounded queue of whole messages,
reconnecting after a drop; every new connection starts with the templates.
"""

import collections
import errno
import fcntl
import ipaddress
import os
import socket
import struct
import termios
import time

from ._transport import send_datagrams
from .logs import logger
from .parsers import whole_number

log = logger(__name__)

LOG_INTERVAL = 60.0          # seconds between repeated complaints about one collector
RECONNECT_INTERVAL = 1.0     # seconds between TCP connection attempts
TCP_QUEUE_LIMIT = 4 << 20    # bytes waiting for a TCP collector before messages are dropped
SIOCOUTQ = termios.TIOCOUTQ  # Linux: a TCP socket's bytes sent and not yet acknowledged
TCP_DRAIN_SECONDS = 5.0      # at shutdown, how long to wait for a TCP collector to take the rest


def parse_address(text):
    """'host:port' or '[v6addr]:port' -> (host, port)."""
    host, sep, port = text.rpartition(":")
    port = whole_number(port)
    if not sep or not host or port is None or not 0 < port < 65536:
        raise ValueError(f"bad collector address {text!r}: expected host:port or [ipv6]:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"bad collector address {text!r}: write an IPv6 address as [addr]:port")
    return host, port


def resolve(name, host, port, kind):
    """(family, sockaddr) of a collector; ValueError for an address no collector can have:
    an IPv4 link-local one (no route tells which link it is on: the kernel would send it
    to the default gateway, which never forwards it) or, over TCP, a multicast group."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=kind)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ValueError(f"cannot resolve collector {host}: {getattr(e, 'strerror', None) or e}") from None
    address = ipaddress.ip_address(sockaddr[0].partition("%")[0])
    if address.version == 4 and address.is_link_local:
        raise ValueError(f"collector {name}: a link-local IPv4 address is on no link pyprobe can name; "
                         "give the collector a routable address")
    if address.version == 6 and (address.is_link_local or address.is_multicast and address.packed[1] & 15 <= 2) \
            and not sockaddr[3]:
        raise ValueError(f"collector {name}: a link-local address needs its interface: [{address}%IFACE]:{port}")
    if address.is_multicast and kind == socket.SOCK_STREAM:
        raise ValueError(f"collector {name}: a multicast group takes UDP only")
    return family, sockaddr


def set_multicast_hops(sock, family, sockaddr, hops):
    """A datagram to a multicast group crosses at most `hops` routers (--multicast-ttl;
    1: the local link only)."""
    if not ipaddress.ip_address(sockaddr[0].partition("%")[0]).is_multicast:
        return
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, hops)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, hops)


class _RateLimitedLog:
    def __init__(self, name):
        self.name = name
        self.next_time = 0.0

    def warn(self, message, *args):
        now = time.monotonic()
        if now >= self.next_time:
            self.next_time = now + LOG_INTERVAL
            log.warning("collector %s: " + message, self.name, *args)


class Pace:
    """A token bucket of datagrams: `burst` may go at once, then `rate` a second. A
    collector's socket queues some 90 full datagrams at Linux's default buffer (nfcapd's
    without -B): a thousand sent in a millisecond, as when many flows end at once, would
    lose most of them."""

    BURST = 32

    def __init__(self, rate, burst=BURST):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.at = time.monotonic()
        self.waited = 0.0            # seconds spent waiting for the bucket

    def take(self, wanted):
        """How many of `wanted` datagrams may go now (at least one), after waiting for
        tokens if there are none, or for a few at a time while many wait."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        need = min(wanted, 8)
        if self.tokens < need:
            pause = (need - self.tokens) / self.rate
            time.sleep(pause)
            self.waited += pause
            self.tokens = float(need)
            self.at = time.monotonic()
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted


class UdpTransport:
    stream = False

    def __init__(self, name, host, port, peer=None, source_address=None, multicast_ttl=1, rate=0):
        """rate: datagrams a second at most, paced (0: as fast as they come)."""
        self.name = name
        self.family, sockaddr = resolve(name, host, port, socket.SOCK_DGRAM)
        if source_address and ipaddress.ip_address(source_address).version != (
                6 if self.family == socket.AF_INET6 else 4):
            raise ValueError(f"cannot send from {source_address} to collector {name}: "
                             "the two are of different IP versions")
        self.sock = socket.socket(self.family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        set_multicast_hops(self.sock, self.family, sockaddr, multicast_ttl)
        if source_address:
            try:
                self.sock.bind((source_address, 0))   # a simulated router of its own (pyprobe generate)
            except OSError as e:
                self.sock.close()
                raise ValueError(f"cannot send from {source_address}: {e.strerror} "
                                 "(is the address on an interface of this host?)") from None
        try:
            self.sock.connect(sockaddr)     # connected: the kernel reports a refusing collector to us
        except OSError as e:                # broadcast, a link-local address without a scope, ...
            self.sock.close()
            raise ValueError(f"cannot send to collector {name}: {e.strerror or e}") from None
        self.errors = 0
        self.log = _RateLimitedLog(name)
        self.pace = Pace(rate) if rate else None

    def send(self, message):
        return self.send_many([message]) == 1

    def send_many(self, messages):
        if self.pace is None:
            return self._send(messages)
        sent, at = 0, 0
        while at < len(messages):
            count = self.pace.take(len(messages) - at)
            sent += self._send(messages[at:at + count])
            at += count
        return sent

    def _send(self, messages):
        sent, refused = send_datagrams(self.sock.fileno(), messages)
        if refused:
            self.errors += len(refused)
            self.log.warn("send failed: %s (counted; pyprobe keeps running)", os.strerror(refused[-1][1]))
        return sent

    def pump(self):
        """Nothing waits: a datagram is sent or counted as lost at once."""

    def close(self):
        self.sock.close()

    def statistics(self):
        out = {"send_errors": self.errors}
        if self.pace is not None:
            out["paced_seconds"] = round(self.pace.waited, 3)
        return out


class TcpTransport:
    """IPFIX over TCP: a bounded queue of whole messages, and a new connection starts
    with the peer's templates, then whatever waited, numbered for their place in it."""

    stream = True

    def __init__(self, name, host, port, peer, source_address=None, multicast_ttl=1, rate=0):
        """(rate: TCP's own flow control paces it)"""
        self.name = name
        self.family, self.sockaddr = resolve(name, host, port, socket.SOCK_STREAM)
        self.peer = peer
        self.source_address = source_address
        self.counters = {}
        self.sock = None
        self.connected = False
        self.queue = []                 # whole messages; queue[0] may be partly sent
        self.sent_of_first = 0
        self.written = 0                # bytes written on this connection
        self.unacked = collections.deque()   # (end in bytes written, message) not yet acknowledged
        self.resent = 0
        self.queued_bytes = 0
        self.next_attempt = 0.0
        self.errors = 0
        self.dropped = 0
        self.connections = 0
        self.log = _RateLimitedLog(name)

    def send(self, message):
        if self.queued_bytes + len(message) > TCP_QUEUE_LIMIT:
            self.dropped += 1
            self.log.warn("queue full, message dropped (counted)")
            return False
        if self.connected:
            message = self.peer.renumber(message, self.counters)
        self.queue.append(message)
        self.queued_bytes += len(message)
        self.pump()
        return True

    def send_many(self, messages):
        return sum(self.send(message) for message in messages)

    def pump(self):
        """Connect if needed and write what the socket takes now."""
        if not self.connected and not self._connect():
            return
        if not self.queue and self.unacked and not self._peer_alive():
            return
        while self.queue:
            try:
                n = self.sock.send(memoryview(self.queue[0])[self.sent_of_first:])
            except BlockingIOError:
                return
            except OSError as e:
                self._lost(e)
                return
            self.sent_of_first += n
            self.written += n
            if self.sent_of_first == len(self.queue[0]):
                message = self.queue.pop(0)
                self.queued_bytes -= len(message)
                self.sent_of_first = 0
                self.unacked.append((self.written, message))
        self._forget_acknowledged()

    def _peer_alive(self):
        """With nothing to write, only a read tells that the collector has gone (a reset, or its
        end of the stream): then what it never acknowledged goes again on a new connection."""
        try:
            if self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b"":
                return True           # (a collector does not talk back; whatever it sent stays unread)
            error = OSError(errno.ECONNRESET, "the collector closed the connection")
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as e:
            error = e
        self._lost(error)
        return False

    def _forget_acknowledged(self):
        """Drop the messages the collector's TCP has acknowledged: the kernel's count of
        bytes sent but not acknowledged (SIOCOUTQ) says where they end."""
        if not self.unacked or self.sock is None:
            return
        try:
            outstanding = struct.unpack("i", fcntl.ioctl(self.sock.fileno(), SIOCOUTQ, b"\0" * 4))[0]
        except OSError:
            return
        acknowledged = self.written - outstanding
        while self.unacked and self.unacked[0][0] <= acknowledged:
            self.unacked.popleft()

    def _connect(self):
        if self.sock is None:
            if time.monotonic() < self.next_attempt:
                return False
            self.next_attempt = time.monotonic() + RECONNECT_INTERVAL
            self.sock = socket.socket(self.family, socket.SOCK_STREAM)
            self.sock.setblocking(False)
            if self.source_address:
                self.sock.bind((self.source_address, 0))
            code = self.sock.connect_ex(self.sockaddr)
            if code not in (0, errno.EINPROGRESS):
                self._lost(OSError(code, errno.errorcode.get(code, str(code))))
                return False
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._lost(OSError(code, errno.errorcode.get(code, str(code))))
            return False
        try:
            self.sock.getpeername()
        except OSError:
            return False                # still connecting
        self.connected = True
        self.connections += 1
        if self.connections > 1:
            log.info("collector %s: reconnected", self.name)
        # A new connection knows no templates: they go first, then what waited, numbered afresh.
        self.counters = {}
        self.queue = [self.peer.renumber(m, self.counters) for m in self.peer.stream_start() + self.queue]
        self.queued_bytes = sum(len(m) for m in self.queue)
        return True

    def _lost(self, error):
        """The connection failed: what it had not delivered goes again on the next one.
        That is the messages the collector's TCP never acknowledged, and one half sent
        (whole again). Bytes it acknowledged but its program never read are beyond what
        TCP can tell."""
        self.errors += 1
        self.log.warn("connection failed: %s (counted; will reconnect)", error.strerror or error)
        self._forget_acknowledged()      # (the kernel still knows after a reset)
        again = [message for _, message in self.unacked]
        self.resent += len(again) + (1 if self.sent_of_first else 0)
        self.queue = again + self.queue
        self.queued_bytes += sum(len(m) for m in again)
        self.unacked.clear()
        self.sent_of_first = self.written = 0
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.connected = False

    def close(self):
        deadline = time.monotonic() + TCP_DRAIN_SECONDS
        while (self.queue or self.unacked) and time.monotonic() < deadline:
            self.pump()
            if self.queue or self.unacked:
                time.sleep(0.01)
        if self.queue:
            self.dropped += len(self.queue)
            log.warning("collector %s: %d messages not delivered at exit", self.name, len(self.queue))
        if self.sock is not None:
            self.sock.close()

    def statistics(self):
        return {"send_errors": self.errors, "dropped": self.dropped, "connections": self.connections,
                "resent": self.resent}


TRANSPORTS = {"udp": UdpTransport, "tcp": TcpTransport}
