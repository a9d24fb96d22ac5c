"""The Python API: `extract` (compute), `atlas` (multilayer), `Run` (run), the report's assembly (report),
reloading weights (reload), `validate`, and the demo. `featgraph/__init__.py` re-exports the public names.
"""
