"""Fuzzing the packet paths: `python3 -m fuzz` (see fuzz/frames.py)."""
