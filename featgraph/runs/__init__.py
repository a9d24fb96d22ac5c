"""The run directory on disk: staged writes and ownership markers (files), the manifest, a run's tables
(rundir), an atlas's layers (atlasdir), and extract's resumable parts (resume). docs/run-directory.md.
"""
