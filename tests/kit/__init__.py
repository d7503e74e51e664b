"""The kit's own tests, run once per backend in a render of its own (tests/test_kit.py)."""
