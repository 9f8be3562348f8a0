"""Helpers the tests share: one place each, imported by test modules and fixture plugins alike."""
