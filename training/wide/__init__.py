"""Wide parts of the served heads: linear models on the user's item bag (wide & deep)."""
