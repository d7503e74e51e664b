"""Helpers the template's tests share: render, install, run, boot, databases."""
