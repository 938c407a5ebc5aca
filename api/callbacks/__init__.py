"""The callback queue of missed callers, and click-to-call."""
