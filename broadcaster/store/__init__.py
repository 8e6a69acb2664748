"""The durable store: a contract (``contract``) and its SQLite implementation (``sqlite``).

``Store`` is the SQLite store, the embedded default.
"""

from .contract import (
    ChannelChange,
    ChannelState,
    ChannelStates,
    DataStore,
    IncidentStore,
    Lease,
    LeaseLost,
    Leases,
    Outbox,
    PostPart,
    SourceMarks,
    StoreError,
    StoreProblem,
    StoreUnavailable,
    ThreadKey,
)
from .sqlite import Store, TransactionAborted, text_hash

__all__ = [
    "ChannelChange",
    "ChannelState",
    "ChannelStates",
    "DataStore",
    "IncidentStore",
    "Lease",
    "LeaseLost",
    "Leases",
    "Outbox",
    "PostPart",
    "SourceMarks",
    "Store",
    "StoreError",
    "StoreProblem",
    "StoreUnavailable",
    "ThreadKey",
    "TransactionAborted",
    "text_hash",
]
