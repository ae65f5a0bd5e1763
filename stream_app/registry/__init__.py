"""Model versions: their records and blobs, checkpoints, the store, transfer, safe loading, replay.

Everything a worker needs to write a version and to read one back without running its bytes.
"""
