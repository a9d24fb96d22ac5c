"""Loading inputs: model weights (safetensors, in-memory modules), SAEs (params.npz, tensors), Neuronpedia labels, the Hub."""
