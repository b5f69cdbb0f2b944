"""People you may know: link prediction on the shared social graph (the book's chapter 10)."""
