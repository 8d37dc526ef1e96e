"""asearcher: a replication suite for ASearcher (long-horizon agentic search, fully asynchronous RL)."""

__version__ = "0.1.0"
