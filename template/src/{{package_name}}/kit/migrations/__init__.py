"""Schema migrations at start-up, under a lock, and the lineage table they keep."""
