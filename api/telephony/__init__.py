"""Mango Office telephony: the webhook receiver, calls and the inbox."""
