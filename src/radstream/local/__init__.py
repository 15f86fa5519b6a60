"""The embedded engine: folder store, durable SQLite executor, worker processes."""
