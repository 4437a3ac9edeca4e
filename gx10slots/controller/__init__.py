"""`slots controller`: leader election (election), the loop (run), its metrics (metrics)."""
