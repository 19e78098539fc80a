"""Infinite-width limit solvers (one module per family; each appends its exports here)."""
