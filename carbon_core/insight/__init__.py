"""Insight layer: gold tables and figures built from the allocation's gold tables."""
