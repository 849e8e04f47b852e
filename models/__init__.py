"""isasim.models"""
