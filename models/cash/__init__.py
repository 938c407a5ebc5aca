"""The city cash book: its table and the rule that an amount's sign follows its type."""
