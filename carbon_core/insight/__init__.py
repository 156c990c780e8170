"""Insight layer: tables built on the gold tables for the people who read the numbers."""
