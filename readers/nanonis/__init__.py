"""Nanonis reader and writer plugin (placeholder until the reader lands)."""
