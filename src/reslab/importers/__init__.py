"""Converters from other projects' checkpoints into reslab checkpoints."""
