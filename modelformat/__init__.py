"""The checkpoint format, shared by the registry and the trainer, torch-free.

``spec`` says what a LeNet checkpoint is (metadata keys, expected tensors); ``header`` is the one
strict safetensors header reader, which refuses pickles, zips and anything else before any
deserialiser sees the bytes; ``strictjson`` holds the JSON rules the header and the metadata
share; ``errors`` is the root of the product's exception tree.
"""
