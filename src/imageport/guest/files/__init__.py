"""The guest's files as the booted system sees them: mounts, fstab, bounded config reads, YAML."""
