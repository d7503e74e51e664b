"""Tests over HTTP through the ASGI app, with its lifespan running."""
