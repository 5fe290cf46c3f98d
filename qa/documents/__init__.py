"""Text → passages: files read into text, OCR clean-up, passages cut at sentence ends."""
