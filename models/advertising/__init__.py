"""Advertising: what each campaign cost, per period (the ROI report divides by it)."""
