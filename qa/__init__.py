"""Semantic question answering over documents: text → passages → vectors → index → results."""

import os

# torch, FAISS and numpy each keep OpenMP/BLAS threads; spinning idle threads of one library
# steal the cores the next one needs on a small machine (a 30 ms query took 60-110 ms).
# Must be set before any of them is imported; an operator's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
