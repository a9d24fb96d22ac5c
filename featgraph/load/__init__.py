"""I/O at the input edge: model weights, SAEs and Neuronpedia labels."""
