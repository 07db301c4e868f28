"""Images: registering, listing, updating, tagging, deleting; their checks and data uploads."""
