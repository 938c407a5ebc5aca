"""Missed callers called back: the callback queue, and calls placed from leadline (click-to-call)."""
