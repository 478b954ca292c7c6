"""What a model looks like from outside, shared by the pair scores and the DNA index: black-box
outputs, centred Gram matrices of features (gram DNA), weight sketches and output similarities."""
