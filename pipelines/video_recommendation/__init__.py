"""Homepage video recommendation (the book's chapter on YouTube video recommendation)."""
