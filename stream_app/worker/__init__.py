"""The worker around the pure core: the Faust app, the serve loop, versions, operations and HTTP.

It owns all Kafka I/O of serving and learning and wires :mod:`stream_app.core` to it.
"""
