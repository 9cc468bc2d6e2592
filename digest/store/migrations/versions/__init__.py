"""One module per schema version, oldest first by `down_revision`."""
