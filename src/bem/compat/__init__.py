"""Compatibility with the old platform's clients: their recorded requests and their replay."""
