"""Index → results: channels fused into one ranking, confidence, answering sentences."""
