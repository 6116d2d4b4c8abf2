"""latentrl.objectives (see DESIGN.md)."""
