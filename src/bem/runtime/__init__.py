"""The cluster runtime: supervisor, service client, compute pool, cache, health, metrics."""
