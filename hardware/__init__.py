"""Device emulators and fault injectors, for tests, demos and field engineers."""
