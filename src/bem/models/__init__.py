"""Data shared by every service: the project graph, pulses, agents."""
