"""Applying a plan: the executor walks it in dependency order; it decides nothing."""
