"""Operator tools: log formats, the container files, backups."""
