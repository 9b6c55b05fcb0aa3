"""Console views, one module per page; each is a thin translation between HTTP and storage."""
