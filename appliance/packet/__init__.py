"""Header codecs, one module per header (frozen dataclasses, one struct.Struct each)."""
