"""isasim.cli"""
