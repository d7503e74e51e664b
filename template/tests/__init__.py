"""The service's own tests: real PostgreSQL, a database per run, a transaction per test."""
