"""Event recommendation (the book's chapter 7): location- and time-aware ranking of always-new events."""
