"""Tests of the database machinery: repositories, pagination, units of work."""
