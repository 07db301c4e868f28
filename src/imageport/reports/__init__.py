"""Renderers of check reports: human text and a versioned JSON document."""
