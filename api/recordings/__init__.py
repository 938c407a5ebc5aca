"""Call recordings: the mailbox import (manual run, status), the inbox of unmatched recordings,
manual linking, and the recordings of a request."""
