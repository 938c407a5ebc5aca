"""The city cash book: transactions and their balance."""
