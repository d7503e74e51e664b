"""The read-through cache in Redis: `Cached` (a service's opt-in, `entries.py`) and
`Cache` (the process's Redis client, `store.py`). README, "Cache", says how to use it."""
