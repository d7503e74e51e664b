"""Database machinery the domain packages build on: engine, sessions, base, repository."""
