"""The `storeedge` command line."""
