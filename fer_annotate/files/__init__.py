"""Files the tool fetches and keeps: the cache folder, SHA-256 checksums, verified downloads (the bottom layer)."""
