"""Budgets, limits and usage end to end."""
