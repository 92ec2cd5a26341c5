"""The pure domain: route-file model, mapping, delivery states and policies (see README.md)."""
