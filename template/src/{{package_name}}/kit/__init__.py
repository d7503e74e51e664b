"""The template's machinery: the service's code builds on it and does not have to read it."""
