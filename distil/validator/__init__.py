"""Pieces the validator neuron wires together: the round scorer and the status answers."""
