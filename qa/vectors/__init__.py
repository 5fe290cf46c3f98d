"""Passages → vectors: the encoders' embeddings, and the keyword terms BM25 indexes (sparse vectors)."""
