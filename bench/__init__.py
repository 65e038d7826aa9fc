"""`fanline bench` and `fanline plan`: measure push, pull and hybrid fan-out on this machine.

The package drives a running suite over gRPC; it reads the store only for what the API does
not expose (memory used, per-batch timestamps) and loads large graphs with the services' own
key layout when loading them one Follow call at a time would take too long.
"""
