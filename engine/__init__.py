"""The engine: what isasim computes, as a library. `isasim.trace`, `check`, `compare`, `explain`, `emit` and
`training_step` (api.py) call these; the CLI (cli/) only parses arguments and renders what they return.

Every function works through the backends (backends/), so none of it asks which kind of machine a target is.
"""
