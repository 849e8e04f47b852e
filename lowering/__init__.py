"""isasim.lowering"""
