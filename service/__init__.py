"""Bitseek's HTTP service: FastAPI app, SQLite storage, collections, retraining jobs."""
