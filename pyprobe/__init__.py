"""pyprobe: a NetFlow/IPFIX probe with a Cython flow meter."""

__version__ = "0.1.0"
