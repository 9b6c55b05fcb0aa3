"""Remote business config: fetched from the cloud, checked against this box, applied all or
nothing, each changed section handed to its consumer and nothing else touched."""
