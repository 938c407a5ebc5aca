"""Call recordings: their table, the mailbox they are imported from, and the matching rules."""
