"""park reader plugin (being built; registers no hooks yet)."""
