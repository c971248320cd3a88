"""commcal: content calendars in YAML, published on time, exactly once."""

__version__ = "0.1.0"
