"""Encoders from flow records to export datagrams, one module per protocol version.

Each encoder is a pure function of (packed records, explicit state, flow clock)
to a list of datagrams: no sockets, so tests read the bytes directly.
"""
