"""latentrl.collectors (see DESIGN.md)."""
