"""Stand-in: nothing is plotted."""
