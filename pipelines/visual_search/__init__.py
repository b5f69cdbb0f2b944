"""Visual search (the book's chapter 2): a contrastive image encoder, an ANN index, re-ranking, a service."""
