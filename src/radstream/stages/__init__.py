"""The pipeline's stage functions: pure over the small interfaces in :mod:`.ports`."""
