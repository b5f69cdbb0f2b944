"""Shared mechanics every case study calls: settings, atomic I/O, validation, Feast, registry, drift."""
