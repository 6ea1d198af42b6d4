"""Deliberately broken plugins for the tests."""
