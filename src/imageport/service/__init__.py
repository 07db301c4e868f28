"""Use cases. The CLI (and later the API and workers) call these and nothing below them."""
