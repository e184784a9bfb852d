"""edgesketch: run a trained network on a microcontroller as a Representer Sketch (hash, look up, add)."""
__version__ = "0.1.0"
