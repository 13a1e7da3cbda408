"""Tests of the operations console."""
