"""Replaying capture files: several files as one time-ordered stream, looped, and
paced in real time.

Files are merged by timestamp: at each step the file whose next packet is the
earliest hands over its run of packets up to the next packet of any other file
(rotated captures, which do not overlap, pass whole batches). Each round of a
loop continues the time line where the last ended: round k's times are moved by
k times the capture's span plus its mean gap between packets.

With a speed (--realtime), packets are fed when their time comes, measured from
the first packet and scaled by the speed; between packets the source yields
empty batches at least every TICK seconds, with the clock the meter should read
then, so flows go idle and end when a live probe would have ended them. Nothing
is dropped when the machine cannot keep up: the replay falls behind, and
Lateness says by how much.

A pause longer than max_gap wall seconds (--max-gap) is cut to max_gap: the flow
clock first runs to the end of the pause (flows end as in the capture), then the
time line moves on by the cut, so the replay's clock and the records dated now go
on from there. A flow that goes on across a cut pause keeps its capture duration.
"""

import glob
import os
import sys
import time

from .._encode import retime
from .._meter import Lateness, first_after, packet_time, shift_times
from ..errors import InputError
from ..logs import logger
from .file import FileSource
from .formats import ready

log = logger(__name__)

TICK = 0.1                    # seconds between clock ticks in a quiet stretch (as live capture)
DEFAULT_MAX_GAP = 1.0         # wall seconds a real-time replay waits at most between packets
BEHIND_WARNING = 1.0          # seconds late at which the end-of-run warning is given
GLOB_CHARS = "*?["


def duration_text(seconds):
    """3.2 s, 52.0 min, 5.8 years: a pause as an operator reads it."""
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def expand(paths):
    """Paths as given, with unquoted-style glob patterns expanded (sorted); '-' is stdin."""
    out = []
    for path in paths:
        if path != "-" and not os.path.exists(path) and any(c in path for c in GLOB_CHARS):
            matches = sorted(glob.glob(path))
            if not matches:
                raise InputError(f"{path}: no file matches")
            out += matches
        else:
            out.append(path)
    return out


class Timeline:
    """A real-time replay's clock: capture time t is due at wall time wall0 + (t - t0) / speed."""

    def __init__(self, speed):
        self.speed = speed
        self.t0 = None               # capture time of the first packet (microseconds)
        self.mono0 = None            # time.monotonic() then, in microseconds
        self.epoch0 = None           # wall clock then, microseconds since the epoch

    def start(self, t0):
        self.t0 = t0
        self.mono0 = time.monotonic_ns() // 1000
        self.epoch0 = time.time_ns() // 1000

    @property
    def started(self):
        return self.t0 is not None

    def now_mono_us(self):
        return time.monotonic_ns() // 1000

    def capture_now(self):
        """The capture time that is due now."""
        return self.t0 + int((self.now_mono_us() - self.mono0) * self.speed)

    def wait_seconds(self, t):
        """Seconds until capture time t is due (negative: overdue)."""
        return (self.mono0 + (t - self.t0) / self.speed - self.now_mono_us()) / 1e6


class ReplaySource:
    """One or more capture files as one stream of batches; see the module's docstring.

    speed: None (as fast as possible) or the real-time factor; rounds: how many times
    to read the files (0: until stopped); shift: round k shifts every address by k."""

    live = False
    serial = 0                   # files have no interfaces (a cooked v2 capture names them per packet)

    def __init__(self, paths, speed=None, rounds=1, shift=False, dated=True, max_gap=DEFAULT_MAX_GAP):
        self.paths = expand(paths)
        self.path = self.paths[0] if len(self.paths) == 1 else f"{self.paths[0]} (+{len(self.paths) - 1} files)"
        self.speed = speed
        self.rounds = rounds
        self.shift = shift
        self.ticking = speed is not None
        self.dating = self if dated and speed is not None else None   # records dated now (not --keep-time)
        self.rounds_started = 0
        self.filter = None
        self.files = []              # the files open now (a file is opened when the merge reaches it)
        self.entries = [self._peek(path) for path in self.paths]
        self.linktype = self.entries[0][2]          # the first file's; each batch says its own
        sizes = [os.path.getsize(p) if p != "-" and first is not None else None for p, first, _ in self.entries]
        self.size = None if None in sizes or rounds != 1 else sum(sizes)
        self.stopping = False
        self.round = 0
        self.done_packets = 0        # packets of files closed already
        self.done_bytes = 0
        self.done_damage = None      # the first damage a closed file met
        self.done_skipped = {}       # what the parser of closed files skipped (FileSource.statistics)
        self.timeline = Timeline(speed) if speed is not None else None
        self.lateness = Lateness()
        self.first_time = None       # capture time of the first packet of round 0
        self.last_time = None        # latest packet time of round 0
        self.round_packets = 0
        self.period = None           # how far each round moves the times
        self._tick_us = 0
        self._fed_until = None       # the latest packet time fed
        self._fed_mono = None        # and when (monotonic microseconds, as the timeline's)
        self._fed_late_us = 0        # how late the last fed packet was
        self._pending = None         # the next packet's time while waiting for it (None: none known)
        self._unfed_bytes = 0        # the part of the batch read but not fed yet (progress)
        self._unfed_packets = 0
        self._replayed_us = 0        # how far the replay's time line has come (capture time less the cuts)
        self.max_gap = max_gap       # wall seconds (0: no cap)
        self.gaps_cut = 0
        self._cut_after = None       # the packet time a pause was cut after
        self.longest_gap = 0.0       # the longest cut pause, capture seconds

    def _peek(self, path):
        """(path, first packet time or None, link type): a plain file is checked and closed
        again (opened when the merge reaches its first packet, so rotated captures are read
        one or two at a time; inf: it has none); standard input, gzip files and files damaged
        before their first packet stay open (first time None)."""
        source = self._open(path)
        first = source.peek_time() if source.mapped else None
        if first is not None:
            source.close()
            return path, first, source.linktype
        self.files.append(source)
        return path, None, source.linktype

    def _open(self, path):
        return ready(FileSource(path), path, self.filter)

    # -- the Source interface ------------------------------------------------------

    @property
    def packets(self):
        """Packets read and fed."""
        return self.done_packets + sum(f.packets for f in self.files) - self._unfed_packets

    @property
    def bytes_read(self):
        """Bytes read and fed (a paced replay reads ahead of what it has fed)."""
        return self.done_bytes + sum(f.bytes_read for f in self.files) - self._unfed_bytes

    @property
    def damage(self):
        """The first damaged file's damage, 'path: what' (None: none met)."""
        return self.done_damage or next((f"{f.path}: {f.damage}" for f in self.files if f.damage), None)

    @property
    def truncated(self):
        return self.damage is not None

    def set_filter(self, bpf):
        self.filter = bpf
        for f in self.files:
            f.set_filter(bpf)

    def batches(self):
        while not self.stopping and (self.rounds == 0 or self.round < self.rounds):
            self.rounds_started += 1
            if self.round > 0:
                try:
                    self.files = [self._open(p) for p, first, _ in self.entries if first is None]
                except InputError as e:
                    log.error("%s; the replay ends after %d rounds", e, self.round)
                    break
            for batch in self._merged():
                # (stopped, the files end their batches themselves: what they read is still metered)
                if not batch.meta:           # a quiet stream
                    yield batch
                    continue
                if self.round == 0:
                    self._note_round_zero(batch.meta)
                else:
                    batch = batch._replace(meta=shift_times(batch.meta, self.round * self.period))
                if self.shift:
                    batch = batch._replace(round=self.round)
                if self.timeline is None:
                    yield batch
                else:
                    yield from self._paced(batch)
            if self.round == 0:
                self._set_period()
            self.round += 1
        self.warn_if_behind()

    def clock_us(self):
        """The flow clock at a tick: what is due now, but never past the next packet."""
        return self._tick_us

    def stop(self):
        self.stopping = True
        for f in self.files:
            f.stop()

    def close(self):
        for f in self.files:
            f.close()

    def drops(self):
        return None

    # -- merging ---------------------------------------------------------------------

    def _merged(self):
        """Batches of all files in time order: the earliest file's run up to the others' next.
        Plain files are opened when the merge reaches their first packet and closed at their end."""
        pending = sorted((first, i, path) for i, (path, first, _) in enumerate(self.entries)
                         if first is not None and first != float("inf"))
        heads = []                                   # [next time, file index, batches, batch, position, source]
        streams = [i for i, (_, first, _) in enumerate(self.entries) if first is None]
        for i, f in zip(streams, list(self.files)):
            yield from self._start(heads, i, f)
        while heads or pending:
            soonest = min((h[0] for h in heads), default=None)
            while pending and (soonest is None or pending[0][0] <= soonest):
                _, i, path = pending.pop(0)
                try:
                    source = self._open(path)
                except InputError as e:
                    log.error("%s; going on without it", e)
                    continue
                self.files.append(source)
                yield from self._start(heads, i, source)
                soonest = min((h[0] for h in heads), default=None)
            if not heads:
                continue
            heads.sort(key=lambda h: (h[0], h[1]))
            head = heads[0]
            limit = heads[1][0] if len(heads) > 1 else (pending[0][0] if pending else None)
            batch, pos = head[3], head[4]
            n = len(batch.meta) // 16
            end = n if limit is None else max(pos + 1, first_after(batch.meta, pos, limit))
            yield batch if pos == 0 and end == n else batch._replace(meta=batch.meta[16 * pos:16 * end])
            head[4] = end
            if end < n:
                head[0] = packet_time(batch.meta, end)
            elif not (yield from self._advance(head)):
                heads.pop(0)
                self._finished(head[5])

    def _start(self, heads, order, source):
        head = [None, order, iter(source.batches()), None, 0, source]
        if (yield from self._advance(head)):
            heads.append(head)
        else:
            self._finished(source)

    def _finished(self, source):
        """A file read to its end: closed, its counts kept."""
        self.done_packets += source.packets
        self.done_bytes += source.bytes_read
        if self.done_damage is None and source.damage is not None:
            self.done_damage = f"{source.path}: {source.damage}"
        for key, n in source.statistics().items():
            self.done_skipped[key] = self.done_skipped.get(key, 0) + n
        source.close()
        if source in self.files:
            self.files.remove(source)

    @staticmethod
    def _advance(head):
        """The file's next batch into head (True), or False at its end; the empty batches of
        a quiet stream meanwhile are yielded on, so the caller stays responsive."""
        for batch in head[2]:
            if batch.meta:
                head[3], head[4], head[0] = batch, 0, packet_time(batch.meta, 0)
                return True
            yield batch
        return False

    # -- looping ---------------------------------------------------------------------

    def _note_round_zero(self, meta):
        n = len(meta) // 16
        if not n:
            return
        if self.first_time is None:
            self.first_time = packet_time(meta, 0)
        self.last_time = max(self.last_time or 0, packet_time(meta, n - 1))
        self.round_packets += n

    def _set_period(self):
        """Round k's times move by k * (span + mean gap): the next round starts as the
        capture's packets follow each other, never overlapping the last."""
        if self.first_time is None:
            self.period = 1_000_000
            return
        span = self.last_time - self.first_time
        gap = span // (self.round_packets - 1) if self.round_packets > 1 else 1_000_000
        self.period = span + max(gap, 1)

    # -- pacing ----------------------------------------------------------------------

    def _paced(self, batch):
        """The batch in the pieces that are due, with ticks while waiting for the next."""
        meta, n, pos = batch.meta, len(batch.meta) // 16, 0
        timeline = self.timeline
        if not timeline.started:
            timeline.start(packet_time(meta, 0))
        while pos < n and not self.stopping:
            self._unfed(batch, n, pos)
            following = packet_time(meta, pos)
            self._pending = following
            resume = self._resume_time(following)
            due = timeline.capture_now()
            if due >= resume < following:          # the capped wait is over: the rest of the pause is cut
                self._tick_us = following - 1       # (first the flows end that would end in it)
                yield batch._replace(meta=b"")
                self._cut(following, resume)
                continue
            end = first_after(meta, pos, due)
            if end > pos:
                now = timeline.now_mono_us()
                self.lateness.add(meta, pos, end, timeline.t0, timeline.mono0, timeline.speed, now)
                self._fed_until = packet_time(meta, end - 1)
                self._fed_mono = now
                self._fed_late_us = now - timeline.mono0 - int((self._fed_until - timeline.t0) / timeline.speed)
                self._pending = None
                self._replayed_us = self._fed_until - timeline.t0
                self._unfed(batch, n, end)
                self._tick_us = self._fed_until if end == n else min(due, packet_time(meta, end))
                yield batch if pos == 0 and end == n else batch._replace(meta=meta[16 * pos:16 * end])
                pos = end
                continue
            self._tick_us = min(due, following)
            time.sleep(min(max(timeline.wait_seconds(resume), 0.0), TICK))
            yield batch._replace(meta=b"")
        self._unfed(batch, n, n)
        self._pending = None

    def _unfed(self, batch, n, pos):
        """Packets pos.. of the batch's n are read but not fed yet (counted as the file
        source counts what it read: the packets' bytes and their meta)."""
        self._unfed_packets = n - pos
        offset = int.from_bytes(batch.meta[16 * pos + 8:16 * pos + 12], sys.byteorder) if pos < n else 0
        self._unfed_bytes = (len(batch.packets) - offset) + 16 * (n - pos) if pos < n else 0

    def _resume_time(self, following):
        """The capture time the wait for this packet ends at: the packet's own, or max_gap
        wall seconds after the last packet fed."""
        if not self.max_gap or self._fed_until is None or self._fed_until == self._cut_after:
            return following
        return min(following, self._fed_until + int(self.max_gap * self.timeline.speed * 1e6))

    def _cut(self, following, resume):
        """The time line moved on by the rest of the pause: this packet is due now."""
        timeline = self.timeline
        pause = (following - self._fed_until) / 1e6           # capture seconds
        timeline.t0 += following - resume
        self._cut_after = self._fed_until        # (each pause cut once)
        self.gaps_cut += 1
        self.longest_gap = max(self.longest_gap, pause)
        if self.gaps_cut == 1:
            log.warning("the capture pauses %s at %s: --realtime waits at most %g s between packets "
                        "(--max-gap); longer pauses are cut to that, the time line moving on",
                        duration_text(pause), time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self._fed_until / 1e6)),
                        self.max_gap)

    # -- what the operator reads ---------------------------------------------------

    def dated_records(self, records, stride):
        """Records (of `stride` bytes) dated now: moved from the capture's time line to the replay's."""
        t = self.timeline
        if not t.started:
            return records
        return retime(records, stride, t.t0, t.epoch0, t.speed)

    def export_time_us(self, capture_us):
        """The export clock for a flow clock reading: the wall clock of a replay dated now."""
        t = self.timeline
        if not t.started:
            return capture_us
        return t.epoch0 + int((capture_us - t.t0) / t.speed)

    @staticmethod
    def interfaces():
        return []

    def status(self):
        """For the progress line: replay time, wall time and lag."""
        t = self.timeline
        if t is None or not t.started or self._fed_until is None:
            return ""
        wall = (t.now_mono_us() - t.mono0) / 1e6
        replayed = self._replayed_us / 1e6
        return f"replay {replayed:.1f} s  wall {wall:.1f} s  lag {self._lag_seconds():.2f} s"

    def _lag_seconds(self):
        """How late the replay is: the next packet's wait past its due time, or (none waiting)
        how late the last one was fed; a pause in the capture is no lag."""
        if self._pending is not None:
            return max(0.0, -self.timeline.wait_seconds(self._pending))
        return max(0.0, self._fed_late_us / 1e6)

    def statistics(self):
        stats = {"files": len(self.paths), "rounds": self.rounds_started, "damage": self.damage,
                 "skipped": dict(self.done_skipped)}
        for f in self.files:
            for key, n in f.statistics().items():
                stats["skipped"][key] = stats["skipped"].get(key, 0) + n
        t = self.timeline
        if t is not None and t.started and self._fed_until is not None:
            wall = (self._fed_mono - t.mono0) / 1e6    # until the last packet was fed (not the shutdown)
            replayed = self._replayed_us / 1e6
            stats.update(speed=t.speed, effective_speed=replayed / wall if wall > 0 else 0.0,
                         late_median=self.lateness.quantile(0.5), late_p99=self.lateness.quantile(0.99),
                         late_max=self.lateness.worst_seconds)
            if self.gaps_cut:
                stats.update(gaps_cut=self.gaps_cut, longest_gap=self.longest_gap, max_gap=self.max_gap)
        return stats

    def warn_if_behind(self):
        worst = self.lateness.worst_seconds
        if self.timeline is not None and worst > BEHIND_WARNING:
            log.warning("the replay fell behind its schedule by up to %.1f s (99%% of packets within %.2f s): "
                        "the machine cannot keep up at --realtime=%g; nothing was dropped",
                        worst, self.lateness.quantile(0.99), self.speed)

