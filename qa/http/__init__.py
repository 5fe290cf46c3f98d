"""Results → HTTP: the Flask app served by ``server.py``."""
