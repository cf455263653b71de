"""guard/sim."""
