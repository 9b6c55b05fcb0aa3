"""One module per API area; each view is a thin translation between HTTP and storage."""
