"""Uploaded documents: their table and who may upload or read them."""
