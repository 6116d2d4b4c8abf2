"""latentrl.modules (see DESIGN.md)."""
