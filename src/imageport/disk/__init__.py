"""Read-only virtual-disk views, opened only after probing found a file safe to read."""
