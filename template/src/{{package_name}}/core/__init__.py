"""Settings, errors and logging: what every layer of the service shares."""
