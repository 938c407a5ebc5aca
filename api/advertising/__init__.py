"""Campaign spend: what each advertising campaign cost, per month or range of days."""
