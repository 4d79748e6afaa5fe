"""Local inference engines behind small capability protocols (see `engines.base`)."""
