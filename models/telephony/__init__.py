"""Mango Office: the webhook inbox, calls and their legs, and the folding of events into them."""
