"""Read replicas and read-your-writes (PostgreSQL streaming replication)."""
