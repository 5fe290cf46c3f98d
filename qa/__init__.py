"""Semantic question answering over documents: text → passages → vectors → index → results."""

import os

# Thread pools, set before numpy, FAISS, torch or ONNX Runtime load (an operator's own setting wins).
# - OMP_WAIT_POLICY: idle OpenMP threads of one library spinning steal the cores the next one
#   needs on a small machine (a 30 ms query took 60-110 ms).
# - OMP_NUM_THREADS / OPENBLAS_NUM_THREADS = 1: what runs per request outside the encoders (a FAISS
#   search, small numpy products) gains nothing from a second thread and, on a busy machine, waits
#   for it to be scheduled (FAISS searches of 83 vectors took 8 ms under load). Requests run in
#   parallel instead; encoders get their own count from the ``threads`` setting (qa.vectors), and
#   the vector index raises FAISS's count for its rare rebuilds.
# - OPENBLAS_THREAD_TIMEOUT: when a BLAS call does use more threads, they sleep soon after it
#   instead of spinning (an e5 call right after USE-m took 76 ms instead of 52).
# The README ("Performance") has the measurements.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
