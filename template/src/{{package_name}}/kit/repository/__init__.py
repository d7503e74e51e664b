"""Repositories, services and pages: what a domain package builds its resource on."""
