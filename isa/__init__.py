"""isasim.isa"""
