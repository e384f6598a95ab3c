"""A self-contained WebShop simulator (no Java, no torch)."""
