"""FastSwitch kvstore: the index of reusable multi-turn KV held in workers' host memory.

State lives in Redis (`redis_index`), so the index survives a restart of this service.
`KVStoreServer` runs the gRPC service fastswitch.v1.KVStore in-process; `serve` runs it until
SIGTERM/SIGINT.
"""

from fastswitch_kvstore.config import KVStoreConfig
from fastswitch_kvstore.server import KVStoreServer, serve

__all__ = ["KVStoreConfig", "KVStoreServer", "serve"]
