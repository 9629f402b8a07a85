"""Limits on what srforensics reads, shared by modules that must not import numpy."""

#: Images over this many pixels are refused (a decompression-bomb guard; ``--max-pixels``).
DEFAULT_MAX_PIXELS = 64_000_000
