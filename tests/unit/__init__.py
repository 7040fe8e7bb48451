"""Tests of the core modules on plain data, grouped by domain (mirrors bot/)."""
