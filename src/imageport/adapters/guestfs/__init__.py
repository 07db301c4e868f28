"""libguestfs: edit a guest's files inside its appliance (automatic configuration)."""
