"""Every Redis key prefix and channel of the platform, in one place (arq keeps its own in
`constants.py`). Each is read and written by one module, named beside it; `bem backup`
copies every key but those of NOT_BACKED_UP.
"""

from __future__ import annotations

REGISTRY = "bem:registry:"  # runtime/registry.py: a sorted set of live replicas per service
CACHE = "bem:cache:"  # runtime/cache.py: results by operation and content hash
BUS = "bem:bus:"  # runtime/bus.py: pub/sub channels by topic (channels, not keys)
GRAPHS = "bem:graph:"  # services/graph_runtime/store.py: stored graphs by content id
LAYOUTS = "bem:layout:"  # services/graph_runtime/layout.py: node positions by graph
EVENTS = "bem:events:"  # services/callback_engine/redislog.py: stream, records, counters...
RESTORING = "bem:restoring:"  # ops/redis_data.py: keys a restore has staged, not yet renamed

# Replica heartbeats describe the processes of one deployment (restored elsewhere they would
# point the balancer at addresses that do not exist); staged keys are a restore under way.
NOT_BACKED_UP = (REGISTRY, RESTORING)
