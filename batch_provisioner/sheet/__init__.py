"""Stage 1: the input sheet, from files to ``ConnectionRequest`` records."""
