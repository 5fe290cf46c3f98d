"""Vectors → index: where passages, their vectors and their terms are kept and searched."""
