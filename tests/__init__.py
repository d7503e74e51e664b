"""The template's own proof: every variant rendered, linted, typed, tested and booted."""
