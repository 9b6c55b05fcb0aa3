"""Device drivers and the seams they plug into."""
