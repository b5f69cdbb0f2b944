"""Harmful content detection (the book's chapter 5): see ``case.py``."""
