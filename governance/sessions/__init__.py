"""Session domain core: batching into Runtime sessions, lifecycle, token refresh."""
