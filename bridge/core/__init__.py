"""The pure domain: delivery states, outcomes and policies, the mapping and the limits
(see README.md)."""
